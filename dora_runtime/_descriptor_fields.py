"""Field-level readers for dataflow files: inputs, outputs, env, args, deploy, durations.

Each reader takes a PyYAML node, returns the plain value the runtime wants and records a
``(line, message)`` problem for anything wrong instead of raising, so that one pass over a file
reports every mistake in it.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dora_runtime._timer import TIMER_FORMS, parse_duration_s, parse_timer
from dora_runtime.descriptor import DeploySpec, InputSpec

INPUT_KEYS = frozenset({"source", "queue_size", "queue_policy", "input_timeout"})
DEPLOY_KEYS = frozenset({"machine", "labels", "working_dir", "distribute"})
# dora-rs 1.1 spells the policies drop_oldest / backpressure; the dash form is a courtesy.
QUEUE_POLICIES = {"drop_oldest": "drop_oldest", "drop-oldest": "drop_oldest"} | {
    "backpressure": "backpressure"
}
_OUTPUT_ID = re.compile(r"[A-Za-z0-9_./\-]+")

Problem = tuple[int | None, str]
Items = dict[str, tuple[yaml.Node, yaml.Node]]


def line_of(node: yaml.Node) -> int:
    """1-based line where ``node`` starts."""
    return node.start_mark.line + 1


def is_null(node: yaml.Node) -> bool:
    """True for an empty value (``inputs:`` with nothing after it), which dora-rs reads as empty."""
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def show(value: Any) -> str:
    """Render an offending value for a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"'{value}'"
    return f"{value!r} ({type(value).__name__})"


def closest_first(word: str, choices: Iterable[str]) -> list[str]:
    """All of ``choices``, the most similar to ``word`` first."""
    options = sorted(set(choices))
    if not options:
        return []
    return difflib.get_close_matches(word, options, n=len(options), cutoff=0.0)


class FieldReader:
    """Reads node fields from the composed tree, collecting problems instead of raising."""

    def __init__(self, loader: yaml.SafeLoader, base_dir: Path, problems: list[Problem]) -> None:
        self.loader = loader
        self.base_dir = base_dir
        self.problems = problems
        self.bad_outputs: set[str] = set()

    def add(self, node: yaml.Node | None, message: str) -> None:
        self.problems.append((line_of(node) if node is not None else None, message))

    def value(self, node: yaml.Node) -> Any:
        """The plain Python value of a node, as ``yaml.safe_load`` would give it."""
        return self.loader.construct_object(node, deep=True)

    def items(self, node: yaml.Node, where: str) -> Items | None:
        """Key text -> (key node, value node) of a mapping; None (and a problem) otherwise."""
        if not isinstance(node, yaml.MappingNode):
            self.add(node, f"{where} must be a mapping, got {show(self.value(node))}")
            return None
        out: Items = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out[key.value] = (key, value)
            else:
                self.add(key, f"{where} has a key that is not a plain string; use `name: value`")
        return out

    def check_keys(self, items: Items, valid: Iterable[str], where: str) -> set[str]:
        """Report keys not in ``valid``; return the valid keys suggested for them."""
        valid = sorted(valid)
        suggested: set[str] = set()
        for key, (key_node, _) in items.items():
            if key in valid:
                continue
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see docs/dataflow.md for valid keys"
            self.add(key_node, f"unknown key '{key}' {where}; {hint}")
            suggested.update(close)
        return suggested

    def args(self, label: str, items: Items) -> list[str]:
        if "args" not in items or is_null(items["args"][1]):
            return []
        value_node = items["args"][1]
        args = self.value(value_node)
        if isinstance(args, list) and all(_is_scalar_arg(a) for a in args):
            return [str(a) for a in args]
        if _is_scalar_arg(args):
            try:
                return shlex.split(str(args))
            except ValueError as exc:
                self.add(value_node, f"{label}: cannot split args {show(args)}: {exc}")
                return []
        self.add(
            value_node,
            f"{label}: `args` must be a string (`args: --rate 10`) or a list of strings, "
            f"got {show(args)}",
        )
        return []

    def env(self, node: yaml.Node, where: str) -> dict[str, str]:
        if is_null(node):
            return {}
        items = self.items(node, f"`env` of {where}")
        env: dict[str, str] = {}
        for key, (_, value_node) in (items or {}).items():
            value = self.value(value_node)
            if isinstance(value, bool):
                env[key] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                env[key] = str(value)
            else:
                self.add(
                    value_node,
                    f"env variable '{key}' of {where} must be a string, number or boolean, "
                    f"got {show(value)}; quote it",
                )
        return env

    def outputs(self, node_id: str | None, label: str, items: Items) -> list[str]:
        if "outputs" not in items or is_null(items["outputs"][1]):
            return []
        value_node = items["outputs"][1]
        if not isinstance(value_node, yaml.SequenceNode):
            got = show(self.value(value_node))
            self.add(value_node, f"{label}: `outputs` must be a list of names, got {got}")
            self.bad_outputs.add(node_id or "")
            return []
        outputs: list[str] = []
        for item in value_node.value:
            name = self.value(item)
            if not isinstance(name, str) or not _OUTPUT_ID.fullmatch(name):
                self.add(
                    item,
                    f"{label}: output {show(name)} must be a name made of letters, digits, "
                    "'_', '.', '/' and '-'",
                )
                self.bad_outputs.add(node_id or "")
            elif name in outputs:
                self.add(item, f"{label}: output '{name}' is declared twice; remove one")
            else:
                outputs.append(name)
        return outputs

    def deploy(self, node: yaml.Node, where: str) -> DeploySpec | None:
        items = self.items(node, f"`deploy` of {where}")
        if items is None:
            return None
        self.check_keys(items, DEPLOY_KEYS, f"in `deploy` of {where}")
        machine = self.value(items["machine"][1]) if "machine" in items else None
        if machine is not None and not isinstance(machine, str):
            self.add(items["machine"][1], f"`deploy.machine` of {where} must be a string")
            machine = None
        labels = (
            self.env(items["labels"][1], f"`deploy.labels` of {where}") if "labels" in items else {}
        )
        return DeploySpec(machine=machine, labels=labels)

    def duration(
        self, node: yaml.Node, key: str, where: str, positive: bool = False
    ) -> float | None:
        value = self.value(node)
        try:
            seconds = parse_duration_s(value)
        except ValueError as exc:
            self.add(node, f"{where}: `{key}` {show(value)} is invalid; {exc}")
            return None
        if positive and seconds == 0:
            self.add(node, f"{where}: `{key}` must be > 0; remove it to disable the check")
            return None
        return seconds

    # -- inputs --------------------------------------------------------------------------------

    def inputs(self, node_id: str | None, label: str, items: Items) -> dict[str, InputSpec]:
        if "inputs" not in items or is_null(items["inputs"][1]):
            return {}
        mapping = self.items(items["inputs"][1], f"`inputs` of {label}")
        owner = f"node `{node_id}`" if node_id else label
        inputs: dict[str, InputSpec] = {}
        for name, (key_node, value_node) in (mapping or {}).items():
            spec = self.input(f"input `{name}` of {owner}", name, key_node, value_node)
            if spec is not None:
                inputs[name] = spec
        return inputs

    def input(
        self, where: str, name: str, key_node: yaml.Node, value_node: yaml.Node
    ) -> InputSpec | None:
        fields: dict[str, Any] = {}
        if isinstance(value_node, yaml.MappingNode):
            items = self.items(value_node, where) or {}
            self.check_keys(items, INPUT_KEYS, f"in {where}")
            if "source" not in items:
                self.add(value_node, f"{where} has no `source`; add `source: <node>/<output>`")
                return None
            source_node = items["source"][1]
            if "queue_size" in items:
                size = self.value(items["queue_size"][1])
                if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
                    fields["queue_size"] = size
                else:
                    self.add(
                        items["queue_size"][1],
                        f"{where}: queue_size must be an integer >= 1, got {show(size)}",
                    )
            if "queue_policy" in items:
                policy = self.value(items["queue_policy"][1])
                if isinstance(policy, str) and policy in QUEUE_POLICIES:
                    fields["queue_policy"] = QUEUE_POLICIES[policy]
                else:
                    self.add(
                        items["queue_policy"][1],
                        f"{where}: queue_policy {show(policy)} is not one of "
                        "drop_oldest, backpressure",
                    )
            if "input_timeout" in items:
                self.duration(items["input_timeout"][1], "input_timeout", where, positive=True)
        else:
            source_node = value_node
        source = self.value(source_node)
        if not isinstance(source, str):
            self.add(
                source_node,
                f"{where}: source must be `<node>/<output>` or a timer, got {show(source)}",
            )
            return None
        if source.startswith("dora/"):  # reserved for built-in sources, timers only so far
            if not source.startswith("dora/timer/"):  # dora-rs's `dora/logs`, say
                self.add(
                    source_node,
                    f"{where}: built-in source `{source}` is not supported by dora-py; its "
                    f"built-in sources are timers ({TIMER_FORMS})",
                )
                return None
            try:
                parse_timer(source)
            except ValueError as exc:
                self.add(source_node, f"{where}: {exc}")
                return None
        elif source.count("/") < 1 or not all(source.split("/", 1)):
            self.add(
                source_node,
                f"{where}: source '{source}' is not `<node>/<output>`; write e.g. "
                f"`{source.strip('/') or 'camera'}/image` or a timer ({TIMER_FORMS})",
            )
            return None
        return InputSpec(id=name, source=source, line=line_of(key_node), **fields)


def _is_scalar_arg(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)
