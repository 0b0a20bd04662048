"""Parse and validate a dataflow YAML file into a ``Descriptor``.

Works on PyYAML's node tree (``compose``) rather than plain data so that every problem carries the
1-based line it comes from. All problems are collected and raised together in one
``DescriptorError``, sorted by line, so a user fixes a file in one pass.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from dora_runtime._descriptor_fields import (
    FieldReader,
    Items,
    Problem,
    closest_first,
    line_of,
    show,
)
from dora_runtime._spawn import PYTHON_NAMES
from dora_runtime.descriptor import DeploySpec, Descriptor, NodeSpec
from dora_runtime.errors import DescriptorError

# Keys dora-py acts on, and keys dora-rs 1.1 accepts that dora-py reads but ignores.
TOP_KEYS = frozenset({"nodes", "env", "deploy", "_unstable_deploy"})
TOP_KEYS_IGNORED = frozenset(
    {"communication", "debug", "health_check_interval", "strict_types"}
    | {"exit_when_nodes_finish", "type_rules"}
)
NODE_KEYS = frozenset(
    {"id", "name", "description", "path", "args", "env", "inputs", "outputs", "build"}
    | {"deploy", "_unstable_deploy", "restart_policy", "max_restarts", "restart_delay"}
    | {"max_restart_delay", "restart_window", "health_check_timeout", "input_timeout"}
    | {"cpu_affinity"}
)
NODE_KEYS_IGNORED = frozenset(
    {"path_sha256", "ros2", "output_types", "output_framing", "input_types", "output_metadata"}
    | {"pattern", "send_stdout_as", "send_logs_as", "min_log_level", "max_log_size"}
    | {"max_rotated_files", "git", "hub", "branch", "tag", "rev", "shared_memory_pool_size"}
    | {"finish_grace_secs", "module", "params", "startup_timeout"}
)
OPERATOR_KEYS = frozenset({"operator", "operators", "custom"})
RESTART_POLICIES = ("never", "on-failure", "always")
# Keys that make a missing ``path`` legitimate: something creates the file before the spawn.
_BUILDS_PATH = ("build", "git", "hub")
_NODE_ID = re.compile(r"[A-Za-z0-9_.\-]+")
# (seconds field in the file, NodeSpec attribute, must be > 0)
_DURATIONS = (
    ("restart_delay", "restart_delay_s", False),
    ("max_restart_delay", "max_restart_delay_s", False),
    ("restart_window", "restart_window_s", False),
    ("health_check_timeout", "health_check_timeout_s", True),
    ("input_timeout", "input_timeout_s", True),
)


def parse_descriptor(
    text: str, base_dir: Path, path: Path | None = None, *, defer_missing_files: bool = False
) -> Descriptor:
    """Parse and validate dataflow YAML ``text``.

    Relative node paths resolve against ``base_dir``; ``path`` only names the file in errors.
    Raises ``DescriptorError`` listing every problem found, each with its 1-based line. With
    ``defer_missing_files``, a node file that does not exist is not a problem but goes to
    ``Descriptor.missing_files`` (a replay needs only the files of the nodes it runs live).
    """
    where = str(path) if path is not None else "<dataflow>"
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        problems = _duplicate_keys(root)
        raw = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        msg = f"invalid YAML: {what}; fix the syntax at this line (check indentation and quotes)"
        raise DescriptorError(where, [(mark.line + 1 if mark else None, msg)]) from None
    except yaml.YAMLError as exc:
        raise DescriptorError(where, [(None, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        raise DescriptorError(where, [(None, "file is empty; expected a mapping with `nodes:`")])
    parser = _Parser(loader, base_dir, problems, defer_missing_files=defer_missing_files)
    nodes = parser.parse_root(root)
    if parser.problems:
        ordered = sorted(parser.problems, key=lambda p: (p[0] is not None, p[0] or 0))
        raise DescriptorError(where, ordered)
    return Descriptor(
        nodes=nodes,
        base_dir=base_dir,
        path=path,
        text=text,
        raw=raw,
        missing_files=parser.missing_files,
    )


def _duplicate_keys(root: yaml.Node | None) -> list[Problem]:
    """Report keys written twice in one mapping (PyYAML would silently keep the last)."""
    problems: list[Problem] = []
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                stack.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                if key.value in first:
                    problems.append(
                        (
                            line_of(key),
                            f"duplicate key '{key.value}' (first on line {first[key.value]}); "
                            "keep only one",
                        )
                    )
                else:
                    first[key.value] = line_of(key)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return problems


class _Parser(FieldReader):
    """Top level, nodes and the wiring between them."""

    def __init__(
        self,
        loader: yaml.SafeLoader,
        base_dir: Path,
        problems: list[Problem],
        *,
        defer_missing_files: bool = False,
    ) -> None:
        """``defer_missing_files``: a missing node file goes to ``missing_files`` (node id ->
        the problem) instead of ``problems``."""
        super().__init__(loader, base_dir, problems)
        self.defer_missing_files = defer_missing_files
        self.missing_files: dict[str, str] = {}

    def _missing_file(self, node_id: str | None, at: yaml.Node, message: str) -> None:
        if self.defer_missing_files and node_id:
            self.missing_files[node_id] = message
        else:
            self.add(at, message)

    def parse_root(self, root: yaml.Node) -> list[NodeSpec]:
        top = self.items(root, "the top level of a dataflow file")
        if top is None:
            return []
        # `x-...` keys are free for YAML anchors (`x-defaults: &defaults ...`), as in Compose
        extensions = {k for k in top if k.startswith("x-")}
        self.check_keys(top, TOP_KEYS | TOP_KEYS_IGNORED | extensions, "at top level")
        env = self.env(top["env"][1], "top-level `env`") if "env" in top else {}
        deploy_key = "deploy" if "deploy" in top else "_unstable_deploy"
        deploy = self.deploy(top[deploy_key][1], "top-level") if deploy_key in top else None
        if "health_check_interval" in top:
            self.duration(top["health_check_interval"][1], "health_check_interval", "top level")
        if "nodes" not in top:
            self.add(root, "missing `nodes:`; add a list of nodes, each with `id:` and `path:`")
            return []
        nodes_node = top["nodes"][1]
        if not isinstance(nodes_node, yaml.SequenceNode):
            got = show(self.value(nodes_node))
            self.add(nodes_node, f"`nodes` must be a list (`- id: ...` items), got {got}")
            return []
        specs = [self.node(i, n, env, deploy) for i, n in enumerate(nodes_node.value)]
        nodes = [s for s in specs if s is not None]
        self.check_ids(nodes)
        self.check_wiring(nodes)
        return nodes

    def check_ids(self, nodes: list[NodeSpec]) -> None:
        first: dict[str, NodeSpec] = {}
        for spec in nodes:
            if spec.id in first:
                msg = (
                    f"duplicate node id '{spec.id}' on lines {first[spec.id].line} and "
                    f"{spec.line}; rename one of them"
                )
                self.problems.append((spec.line, msg))
            else:
                first[spec.id] = spec

    def check_wiring(self, nodes: list[NodeSpec]) -> None:
        outputs: dict[str, list[str]] = {}
        for spec in nodes:
            outputs.setdefault(spec.id, spec.outputs)
        for spec in nodes:
            for inp in spec.inputs.values():
                if inp.is_timer:
                    continue
                src, out = inp.source_node, inp.source_output
                label = f"input `{inp.source}` of node `{spec.id}`"
                if src not in outputs:
                    known = ", ".join(closest_first(src, outputs)) or "none"
                    msg = f"{label} names unknown node `{src}`; existing nodes: {known}"
                    self.problems.append((inp.line, msg))
                elif out not in outputs[src] and src not in self.bad_outputs:
                    declared = ", ".join(outputs[src]) or "nothing (no `outputs:`)"
                    msg = f"{label} names unknown output `{out}`; node `{src}` declares: {declared}"
                    self.problems.append((inp.line, msg))

    # -- one node ------------------------------------------------------------------------------

    def node(
        self, index: int, node: yaml.Node, top_env: dict[str, str], top_deploy: DeploySpec | None
    ) -> NodeSpec | None:
        items = self.items(node, f"node #{index + 1} in `nodes`")
        if items is None:
            return None
        node_id = self.node_id(index, node, items)
        label = f"node '{node_id}'" if node_id else f"node #{index + 1}"
        valid = NODE_KEYS | NODE_KEYS_IGNORED | OPERATOR_KEYS
        if "outputs" in self.check_keys(items, valid, f"in {label}") and node_id:
            self.bad_outputs.add(node_id)  # a misspelt `outputs:` would make every input fail
        for key in sorted(OPERATOR_KEYS & items.keys()):
            self.add(
                items[key][0],
                f"{label}: the legacy `custom:` node form is not supported by dora-py; move "
                "its `source` to `path:` (and its `args`, `inputs`, `outputs` up a level)"
                if key == "custom"
                else f"{label}: operators are not supported by dora-py (found `{key}:`); "
                "turn the operator into a node with `path:`",
            )
        path, resolved = self.path(label, node, items, node_id)
        kwargs: dict[str, Any] = {}
        if "build" in items:
            build = self.value(items["build"][1])
            if isinstance(build, str):
                kwargs["build"] = build
            else:
                self.add(items["build"][1], f"{label}: `build` must be a command string")
        for key, attr, positive in _DURATIONS:
            if key in items:
                seconds = self.duration(items[key][1], key, label, positive)
                if seconds is not None:
                    kwargs[attr] = seconds
        if "restart_policy" in items:
            policy = self.value(items["restart_policy"][1])
            if policy in RESTART_POLICIES:
                kwargs["restart_policy"] = policy
            else:
                close = difflib.get_close_matches(str(policy), RESTART_POLICIES, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.add(
                    items["restart_policy"][1],
                    f"{label}: restart_policy {show(policy)} is not one of "
                    f"never, on-failure, always{hint}",
                )
        if "max_restarts" in items:
            count = self.value(items["max_restarts"][1])
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                kwargs["max_restarts"] = count
            else:
                self.add(
                    items["max_restarts"][1],
                    f"{label}: max_restarts must be an integer >= 0, got {show(count)}",
                )
        if "cpu_affinity" in items:
            cores = self.value(items["cpu_affinity"][1])
            if isinstance(cores, list) and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cores
            ):
                kwargs["cpu_affinity"] = tuple(dict.fromkeys(cores))
            else:
                self.add(
                    items["cpu_affinity"][1],
                    f"{label}: cpu_affinity must be a list of CPU core numbers (integers >= 0), "
                    f"such as [0, 1]; got {show(cores)}",
                )
        deploy_key = "deploy" if "deploy" in items else "_unstable_deploy"
        deploy = self.deploy(items[deploy_key][1], label) if deploy_key in items else None
        outputs = self.outputs(node_id, label, items)
        # Every field is checked even when the id is bad, so one run lists every problem.
        args = self.args(label, items)
        env = {**top_env, **(self.env(items["env"][1], label) if "env" in items else {})}
        inputs = self.inputs(node_id, label, items)
        if not node_id:
            return None
        return NodeSpec(
            id=node_id,
            path=path,
            resolved_path=resolved,
            args=args,
            env=env,
            inputs=inputs,
            outputs=outputs,
            deploy=_merge_deploy(top_deploy, deploy),
            line=line_of(node),
            raw=self.value(node),
            **kwargs,
        )

    def node_id(self, index: int, node: yaml.Node, items: Items) -> str | None:
        if "id" not in items:
            self.add(node, f"node #{index + 1} has no `id`; add `id: <unique name>`")
            return None
        value_node = items["id"][1]
        node_id = self.value(value_node)
        if not isinstance(node_id, str) or not node_id:
            self.add(
                value_node,
                f"node #{index + 1}: `id` must be a non-empty string, got {show(node_id)}; "
                "quote it if it looks like a number",
            )
            return None
        if not _NODE_ID.fullmatch(node_id):
            bad = next(c for c in node_id if not _NODE_ID.fullmatch(c))
            self.add(
                value_node,
                f"node id '{node_id}' contains {bad!r}; use only letters, digits, '_', '.' and '-'",
            )
        return node_id

    def path(
        self, label: str, node: yaml.Node, items: Items, node_id: str | None = None
    ) -> tuple[str | None, str | None]:
        """(path as written, absolute file or executable) of a node; problems added."""
        if "path" not in items:
            if not OPERATOR_KEYS & items.keys():
                hint = (
                    "`module:` is not supported by dora-py; inline the module's nodes"
                    if "module" in items
                    else "add `path:` (a .py file, an executable on PATH, or `dynamic`)"
                )
                self.add(node, f"{label} has no `path`; {hint}")
            return None, None
        value_node = items["path"][1]
        path = self.value(value_node)
        if not isinstance(path, str) or not path:
            self.add(value_node, f"{label}: `path` must be a string, got {show(path)}")
            return None, None
        if path == "dynamic":
            return path, None
        if path in PYTHON_NAMES:  # the interpreter running dora, whatever PATH holds
            return path, sys.executable
        built = any(key in items for key in _BUILDS_PATH)
        candidate = Path(path) if Path(path).is_absolute() else self.base_dir / path
        if candidate.is_file():
            if not path.endswith(".py") and not os.access(candidate, os.X_OK):
                self.add(
                    value_node,
                    f"{label}: path '{path}' is not executable; run `chmod +x {candidate}` "
                    "(or name a .py file)",
                )
            return path, str(candidate.absolute())
        if candidate.is_dir():
            self.add(
                value_node,
                f"{label}: path '{path}' is a directory ({candidate.absolute()}); "
                "point it at the node's .py file or executable",
            )
            return path, None
        if path.endswith(".py") or "/" in path:
            if built:
                return path, str(candidate.absolute())
            self._missing_file(
                node_id,
                value_node,
                f"{label}: path '{path}' does not exist (looked for {candidate.absolute()}); "
                "fix the path or add a `build:` that creates it",
            )
            return path, None
        found = shutil.which(path)
        if found is None and not built:
            self._missing_file(
                node_id,
                value_node,
                f"{label}: path '{path}' is neither a file (looked in {self.base_dir}) nor an "
                "executable on PATH; install it or fix the path",
            )
        return path, str(Path(found).absolute()) if found else None


def _merge_deploy(top: DeploySpec | None, node: DeploySpec | None) -> DeploySpec:
    """A node's deploy settings, falling back to the dataflow-wide ones."""
    if top is None:
        return node or DeploySpec()
    if node is None:
        return top
    return DeploySpec(machine=node.machine or top.machine, labels={**top.labels, **node.labels})
