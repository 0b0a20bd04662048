"""Dataflow descriptor: the YAML file that declares nodes, their inputs and outputs.

Compatible with dora-rs 1.x dataflow files. ``load_descriptor`` parses and validates; the data
classes below are what the rest of the runtime consumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

QueuePolicy = Literal["drop_oldest", "backpressure"]
RestartPolicy = Literal["never", "on-failure", "always"]

TIMER_PREFIX = "dora/timer/"


@dataclass(frozen=True)
class InputSpec:
    """One input of a node.

    ``source`` is ``"node/output"`` or a built-in timer such as ``"dora/timer/millis/100"``.
    """

    id: str
    source: str
    queue_size: int = 10
    queue_policy: QueuePolicy = "drop_oldest"
    line: int | None = None

    @property
    def is_timer(self) -> bool:
        return self.source.startswith(TIMER_PREFIX)

    @property
    def source_node(self) -> str:
        """Node id of the source (``"dora"`` for timers)."""
        return self.source.split("/", 1)[0]

    @property
    def source_output(self) -> str:
        """Output id of the source (``"timer/millis/100"`` for timers)."""
        return self.source.split("/", 1)[1]

    @property
    def timer_interval_ns(self) -> int | None:
        """Timer period in nanoseconds, or None when the source is not a timer."""
        if not self.is_timer:
            return None
        from dora_runtime._timer import parse_timer

        return parse_timer(self.source)


@dataclass(frozen=True)
class DeploySpec:
    machine: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the dataflow.

    ``path`` is as written in the file; ``resolved_path`` is the absolute ``.py`` file or executable
    that will be started, or None for ``dynamic`` nodes.
    """

    id: str
    path: str | None
    resolved_path: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    build: str | None = None
    deploy: DeploySpec = field(default_factory=DeploySpec)
    restart_policy: RestartPolicy = "never"
    max_restarts: int = 0
    restart_delay_s: float = 0.0
    max_restart_delay_s: float | None = None
    restart_window_s: float | None = None
    health_check_timeout_s: float | None = None
    input_timeout_s: float | None = None
    cpu_affinity: tuple[int, ...] | None = None
    """CPU cores the node's process is pinned to (``None``: not pinned)."""
    line: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dynamic(self) -> bool:
        return self.path == "dynamic"


@dataclass(frozen=True)
class Descriptor:
    """A parsed, validated dataflow."""

    nodes: list[NodeSpec]
    base_dir: Path
    path: Path | None = None
    text: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    missing_files: dict[str, str] = field(default_factory=dict)
    """Node id -> why its file is missing, when parsed with ``defer_missing_files`` (else
    such a node is an error)."""

    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def ignored_outputs(self) -> list[str]:
        """One note per dora-rs key that would make dora-rs send something dora-py does not
        (``send_stdout_as``, ``send_logs_as``): its receivers would wait for nothing."""
        return [
            f"node `{n.id}`: `{key}` is not supported by dora-py; nothing is sent on "
            f"`{n.id}/{n.raw[key]}`"
            for n in self.nodes
            for key in ("send_stdout_as", "send_logs_as")
            if key in n.raw
        ]

    def downstream(self, start: Iterable[str], within: set[str] | None = None) -> dict[str, str]:
        """``start`` and every node fed by one of them, directly or through others (only
        through nodes in ``within`` when given), each -> the start node it was first reached
        from (breadth first, in the order of ``start``)."""
        reached = {n: n for n in start}
        frontier = list(reached)
        while frontier:
            node = frontier.pop(0)
            for n in self.nodes:
                if (
                    n.id not in reached
                    and (within is None or n.id in within)
                    and any(i.source_node == node for i in n.inputs.values())
                ):
                    reached[n.id] = reached[node]
                    frontier.append(n.id)
        return reached

    def subscribers(self, node_id: str, output_id: str) -> list[tuple[NodeSpec, InputSpec]]:
        """Every (node, input) fed by ``node_id/output_id``."""
        source = f"{node_id}/{output_id}"
        return [(n, i) for n in self.nodes for i in n.inputs.values() if i.source == source]


def load_descriptor(path: str | Path, *, defer_missing_files: bool = False) -> Descriptor:
    """Read, parse and validate a dataflow file.

    Raises ``DescriptorError`` listing every problem with its line number
    (``defer_missing_files``: see ``parse_descriptor``).
    """
    from dora_runtime._descriptor_parse import parse_descriptor

    p = Path(path)
    from dora_runtime.errors import DescriptorError

    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DescriptorError(str(path), [(None, "file not found; check the path")]) from None
    except IsADirectoryError:
        raise DescriptorError(str(path), [(None, "is a directory, expected a YAML file")]) from None
    except UnicodeDecodeError:
        hint = (
            "a .dora recording is replayed with `dora replay`"
            if p.suffix == ".dora"
            else "pass the dataflow's .yml file"
        )
        raise DescriptorError(
            str(path), [(None, f"is not a text file, expected a dataflow YAML file ({hint})")]
        ) from None
    return parse_descriptor(
        text, base_dir=p.resolve().parent, path=p, defer_missing_files=defer_missing_files
    )
