"""Deciding which nodes are replayed and which run live, and building the replay dataflow.

By default the sensors are replayed: nodes fed only by timers or by nothing, whose outputs were
recorded. Everything else runs live. A replayed node keeps its id and outputs in the dataflow;
its ``path`` becomes the feeder script, which sends the node's recorded messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from dora_replay._recording import Recording
from dora_replay.errors import RecordingError
from dora_runtime.descriptor import Descriptor, NodeSpec

FEEDER_SCRIPT = str(Path(__file__).resolve().parent / "_feeder.py")
FEEDER_ENV = "DORA_REPLAY_FEEDER"


class ReplayError(RecordingError):
    """A replay could not be set up (unknown node, missing dataflow, bad option)."""


@dataclass
class ReplayPlan:
    """What runs how. ``fed``: per replayed node, the recorded channels its feeder sends;
    ``compared``: recorded outputs of live nodes."""

    descriptor: Descriptor
    replayed: list[str]
    live: list[str]
    fed: dict[str, list[str]]
    compared: list[str]
    replaced: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)  # recorded outputs left out by `channels`

    @property
    def fed_channels(self) -> list[str]:
        return [c for cs in self.fed.values() for c in cs]


def load_dataflow(rec: Recording, dataflow: str | Path | None) -> Descriptor:
    """The dataflow to replay: ``dataflow`` if given, else the one stored in the recording with
    node paths resolved against the folder of the file it was recorded from."""
    from dora_runtime._descriptor_parse import parse_descriptor
    from dora_runtime.descriptor import load_descriptor

    if dataflow is not None:
        return load_descriptor(dataflow)
    text = rec.dataflow_yaml
    if not text.strip():
        raise ReplayError(
            f"{rec.paths[0]} stores no dataflow; pass the dataflow file with --dataflow"
        )
    origin = rec.metadata.get("dataflow_path")
    if origin:
        base = Path(origin).parent
        if not base.is_dir():
            raise ReplayError(
                f"{rec.paths[0]} was recorded from {origin}, whose folder no longer exists; "
                "pass the dataflow file with --dataflow"
            )
        path = Path(origin) if Path(origin).is_file() else None
    else:
        base, path = rec.paths[0].resolve().parent, None
    return parse_descriptor(text, base_dir=base, path=path)


def _unknown(names: list[str], desc: Descriptor, option: str) -> None:
    ids = [n.id for n in desc.nodes]
    bad = [n for n in names if n not in ids]
    if bad:
        raise ReplayError(
            f"{option} names unknown node(s) {', '.join(bad)}; the dataflow has: {', '.join(ids)}"
        )


def _is_source(node: NodeSpec) -> bool:
    return all(i.is_timer for i in node.inputs.values())


def make_plan(
    rec: Recording,
    desc: Descriptor,
    *,
    replay_nodes: list[str] | None = None,
    live_nodes: list[str] | None = None,
    replace_paths: dict[str, str] | None = None,
    channels: list[str] | None = None,
) -> ReplayPlan:
    """Classify nodes and build the dataflow with feeders in place of replayed nodes.

    ``replace_paths``: node id -> new implementation (absolute or relative to the current
    folder); such nodes run live. ``channels``: if it names outputs of replayed nodes, only
    those are sent; if it names live outputs, only those are compared.
    Raises :class:`ReplayError` for unknown nodes or a node both replayed and live.
    """
    replace_paths = dict(replace_paths or {})
    replay_nodes, live_nodes = list(replay_nodes or []), list(live_nodes or [])
    _unknown(replay_nodes, desc, "--replay-nodes")
    _unknown(live_nodes, desc, "--live-nodes")
    _unknown(list(replace_paths), desc, "--replace")
    both = (set(replay_nodes) & set(live_nodes)) | (set(replay_nodes) & set(replace_paths))
    if both:
        raise ReplayError(f"node(s) {', '.join(sorted(both))} cannot be both replayed and live")
    recorded = set(rec.channels)
    replayed: list[str] = []
    warnings: list[str] = []
    for node in desc.nodes:
        outs = [f"{node.id}/{o}" for o in node.outputs]
        if node.id in replay_nodes:
            if not any(c in recorded for c in outs):
                raise ReplayError(
                    f"--replay-nodes: node `{node.id}` has no recorded output "
                    f"(recorded: {', '.join(sorted(recorded)) or 'nothing'})"
                )
            replayed.append(node.id)
        elif node.id in live_nodes or node.id in replace_paths or node.is_dynamic:
            continue
        elif _is_source(node) and outs and any(c in recorded for c in outs):
            replayed.append(node.id)
    live = [n.id for n in desc.nodes if n.id not in replayed]
    chan_filter = set(channels or [])
    unknown = chan_filter - recorded
    if unknown:
        raise ReplayError(
            f"--channels names channel(s) not in the recording: {', '.join(sorted(unknown))}; "
            f"recorded: {', '.join(sorted(recorded))}"
        )
    fed: dict[str, list[str]] = {}
    for nid in replayed:
        outs = [f"{nid}/{o}" for o in desc.node(nid).outputs if f"{nid}/{o}" in recorded]
        fed[nid] = outs
    fed_all = {c for cs in fed.values() for c in cs}
    unsent: list[str] = []
    if chan_filter & fed_all:
        unsent = sorted(fed_all - chan_filter)
        fed = {n: [c for c in cs if c in chan_filter] for n, cs in fed.items()}
    compared = [f"{n}/{o}" for n in live for o in desc.node(n).outputs if f"{n}/{o}" in recorded]
    live_filter = chan_filter - fed_all
    if live_filter:
        compared = [c for c in compared if c in live_filter]
    nodes: list[NodeSpec] = []
    for node in desc.nodes:
        if node.id in replayed:
            for o in node.outputs:
                ch = f"{node.id}/{o}"
                if ch not in recorded and desc.subscribers(node.id, o):
                    warnings.append(f"output {ch} was not recorded: its subscribers get nothing")
            node = replace(
                node,
                path=FEEDER_SCRIPT,
                resolved_path=FEEDER_SCRIPT,
                args=[],
                env={},
                inputs={},
                restart_policy="never",
                build=None,
            )
        elif node.id in replace_paths:
            new = Path(replace_paths[node.id]).expanduser().resolve()
            if not new.is_file():
                raise ReplayError(f"--replace {node.id}={replace_paths[node.id]}: no file {new}")
            replace_paths[node.id] = str(new)
            node = replace(node, path=str(new), resolved_path=str(new))
        nodes.append(node)
    return ReplayPlan(
        descriptor=replace(desc, nodes=nodes),
        replayed=replayed,
        live=live,
        fed=fed,
        compared=compared,
        replaced=replace_paths,
        warnings=warnings,
        unsent=unsent,
    )


def with_feeder_options(plan: ReplayPlan, options: dict[str, dict[str, object]]) -> Descriptor:
    """The plan's dataflow with each feeder's options (JSON) in its environment."""
    nodes = [
        replace(n, env={**n.env, FEEDER_ENV: json.dumps(options[n.id])}) if n.id in options else n
        for n in plan.descriptor.nodes
    ]
    return replace(plan.descriptor, nodes=nodes)
