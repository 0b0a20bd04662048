"""Deciding which nodes are replayed and which run live, and building the replay dataflow.

By default the sensors are replayed: nodes fed only by timers or by nothing, whose outputs were
recorded. Everything else runs live. A replayed node keeps its id and outputs in the dataflow;
its ``path`` becomes the feeder script, which sends the node's recorded messages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dora_replay._index import DATAFLOW_PATH_KEY
from dora_replay._recording import Recording
from dora_replay.errors import RecordingError
from dora_runtime.descriptor import Descriptor, NodeSpec

FEEDER_SCRIPT = str(Path(__file__).resolve().parent / "_feeder.py")
FEEDER_ENV = "DORA_REPLAY_FEEDER"


class ReplayError(RecordingError):
    """A replay could not be set up (unknown node, missing dataflow, bad option)."""


class NodeOptionError(ReplayError):
    """Nodes named by a node option (``option``, e.g. ``--replay-nodes``) are wrong: ``nodes``,
    and ``problem``, the rest of the message (``names unknown node(s) x; the dataflow has: ...``).
    The CLI renames the option when the user gave the nodes with another flag."""

    def __init__(self, option: str, nodes: list[str], problem: str) -> None:
        self.option, self.nodes, self.problem = option, list(nodes), problem
        super().__init__(f"{option} {problem}")

    def renamed(self, option: str) -> NodeOptionError:
        return NodeOptionError(option, self.nodes, self.problem)


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
    absent: dict[str, str] = field(default_factory=dict)
    """Recorded channels no node of the dataflow produces (a node removed or renamed, an
    output no longer declared) -> why. They are in ``compared`` too, so they fail instead of
    silently dropping out of the comparison."""

    @property
    def fed_channels(self) -> list[str]:
        return [c for cs in self.fed.values() for c in cs]


def find_dataflow(recording: Recording | str | os.PathLike[str]) -> Path | None:
    """The dataflow file ``recording`` was made from, the copy nearest to where the user works.

    The recorded path (``dataflow_path`` in the metadata) is looked up by its tails, longest
    first (``/old/x/examples/robot/dataflow.yml`` -> ``x/examples/robot/dataflow.yml`` ->
    ``examples/robot/dataflow.yml``...), below the current folder, then below each folder above
    the recording (nearest first), then below each folder above the current folder. A bare file
    name only counts when that file holds the recorded dataflow unchanged. The recorded file
    itself is only the last resort, so a golden file replayed in a second clone runs that
    clone's nodes, not those of the checkout it was recorded in. ``None`` when the recording
    names no file or none is found.
    """
    if not isinstance(recording, Recording):
        from dora_replay._recording import open as open_recording

        with open_recording(recording) as rec:
            return find_dataflow(rec)
    rec = recording
    origin = rec.metadata.get(DATAFLOW_PATH_KEY)
    if not origin:
        return None
    recorded = Path(origin)
    parts = recorded.parts[1:] if recorded.is_absolute() else recorded.parts
    tails = [Path(*parts[i:]) for i in range(len(parts))]
    cwd = Path.cwd()
    roots = dict.fromkeys([cwd, *rec.paths[0].resolve().parents, *cwd.parents])
    for root in roots:
        for tail in tails:
            candidate = root / tail
            if (
                candidate.is_file()
                and (len(tail.parts) > 1 or _same_text(candidate, rec))
                and not (recorded.is_absolute() and same_file(candidate, recorded))
            ):
                return candidate.resolve()
    return recorded if recorded.is_absolute() and recorded.is_file() else None


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _same_text(path: Path, rec: Recording) -> bool:
    try:
        return path.read_text(encoding="utf-8") == rec.dataflow_yaml
    except (OSError, UnicodeDecodeError):
        return False


def load_dataflow(rec: Recording, dataflow: str | Path | None) -> tuple[Descriptor, list[str]]:
    """The dataflow to replay and notes for the user: that it was found elsewhere than
    recorded, that the file found has changed since the recording.

    ``dataflow`` if given, else the one stored in the recording with node paths resolved
    against the folder of the file it was recorded from (found by :func:`find_dataflow` when
    the recording comes from another checkout). Raises :class:`ReplayError` when the stored
    dataflow cannot be placed.
    """
    from dora_runtime._descriptor_parse import parse_descriptor
    from dora_runtime.descriptor import load_descriptor

    if dataflow is not None:
        return load_descriptor(dataflow, defer_missing_files=True), []
    text = rec.dataflow_yaml
    if not text.strip():
        raise ReplayError(
            f"{rec.paths[0]} stores no dataflow; pass the dataflow file with --dataflow"
        )
    origin = rec.metadata.get(DATAFLOW_PATH_KEY)
    if not origin:
        return parse_descriptor(
            text, base_dir=rec.paths[0].resolve().parent, defer_missing_files=True
        ), []
    found = find_dataflow(rec)
    if found is not None:
        notes = []
        if not same_file(found, Path(origin)):
            where = "" if Path(origin).is_file() else ", not found here"
            notes.append(f"recorded from {origin}{where}; using {_shown(found)}")
        if not _same_text(found, rec):
            notes.append(
                f"{_shown(found)} has changed since the recording; this replay runs the "
                f"dataflow stored in the recording (pass --dataflow {_shown(found)} to run "
                "the changed one)"
            )
        desc = parse_descriptor(text, base_dir=found.parent, path=found, defer_missing_files=True)
        return desc, notes
    base = Path(origin).parent
    if not base.is_dir():
        raise ReplayError(
            f"{rec.paths[0]} was recorded from {origin}, whose folder no longer exists, and no "
            f"file `{Path(origin).name}` with a tail of that path was found below the current "
            "folder or the recording's folders; pass the dataflow file with --dataflow"
        )
    return parse_descriptor(text, base_dir=base, defer_missing_files=True), []


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _unknown(names: list[str], desc: Descriptor, option: str) -> None:
    ids = [n.id for n in desc.nodes]
    bad = [n for n in names if n not in ids]
    if bad:
        raise NodeOptionError(
            option,
            bad,
            f"names unknown node(s) {', '.join(bad)}; the dataflow has: {', '.join(ids)}",
        )


def _is_source(node: NodeSpec) -> bool:
    return all(i.is_timer for i in node.inputs.values())


def _replayed_nodes(
    rec: Recording,
    desc: Descriptor,
    replay_nodes: list[str] | None,
    live_nodes: list[str] | None,
    replace_paths: dict[str, str],
) -> list[str]:
    """The nodes fed from the recording, in dataflow order: ``replay_nodes``, and the sensors
    (fed only by timers or nothing) and dynamic nodes with a recorded output, not named live or
    replaced. Raises :class:`ReplayError` for unknown nodes or one both replayed and live."""
    replay_nodes, live_nodes = list(replay_nodes or []), list(live_nodes or [])
    _unknown(replay_nodes, desc, "--replay-nodes")
    _unknown(live_nodes, desc, "--live-nodes")
    _unknown(list(replace_paths), desc, "--replace")
    both = (set(replay_nodes) & set(live_nodes)) | (set(replay_nodes) & set(replace_paths))
    if both:
        raise ReplayError(f"node(s) {', '.join(sorted(both))} cannot be both replayed and live")
    recorded = set(rec.channels)
    replayed: list[str] = []
    for node in desc.nodes:
        outs = [f"{node.id}/{o}" for o in node.outputs]
        if node.id in replay_nodes:
            if not any(c in recorded for c in outs):
                raise NodeOptionError(
                    "--replay-nodes",
                    [node.id],
                    f"names node `{node.id}`, which has no recorded output to replay "
                    f"(recorded: {', '.join(sorted(recorded)) or 'nothing'})",
                )
            replayed.append(node.id)
        elif node.id in live_nodes or node.id in replace_paths:
            continue
        elif (_is_source(node) or node.is_dynamic) and any(c in recorded for c in outs):
            # a dynamic node (what `dora import` writes for each MCAP topic's node) cannot run
            # here: with recorded outputs, it is replayed whatever its inputs
            replayed.append(node.id)
    return replayed


def _node_graph(rec: Recording) -> Descriptor:
    """The recording's stored dataflow for classifying nodes only: node files need not exist
    (every non-dynamic path is read as this Python executable)."""
    import sys

    import yaml

    from dora_runtime._descriptor_parse import parse_descriptor

    doc = yaml.safe_load(rec.dataflow_yaml or "") or {}
    if not isinstance(doc, dict) or not doc.get("nodes"):
        raise ReplayError(f"{rec.paths[0]} stores no dataflow")
    for node in doc["nodes"]:
        if isinstance(node, dict) and node.get("path") != "dynamic":
            node["path"] = sys.executable
    return parse_descriptor(yaml.safe_dump(doc), base_dir=rec.paths[0].resolve().parent)


def compared_channels(
    recording: Recording | str | os.PathLike[str],
    *,
    replace: dict[str, str] | None = None,
    replay_nodes: list[str] | None = None,
    live_nodes: list[str] | None = None,
) -> list[str]:
    """The channels a replay of ``recording`` compares: the recorded outputs of the nodes that
    run live (nodes with an input from another node, dynamic and replaced nodes, and
    ``live_nodes``), in dataflow order, the order of ``ReplayResult.comparison.channels``.

    ``replace``/``replay_nodes``/``live_nodes`` as for :func:`dora_replay.replay` (only the
    node ids of ``replace`` matter here). Reads the dataflow stored in the recording; no node
    file needs to exist. Raises :class:`ReplayError` for unknown nodes or a recording without
    a dataflow.
    """
    from dora_replay._recording import open as open_recording

    rec = recording if isinstance(recording, Recording) else open_recording(recording)
    try:
        desc = _node_graph(rec)
        replayed = _replayed_nodes(rec, desc, replay_nodes, live_nodes, dict(replace or {}))
        return [
            f"{n.id}/{o}"
            for n in desc.nodes
            if n.id not in replayed
            for o in n.outputs
            if f"{n.id}/{o}" in rec.channels
        ]
    finally:
        if rec is not recording:
            rec.close()


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
    replayed = _replayed_nodes(rec, desc, replay_nodes, live_nodes, replace_paths)
    recorded = set(rec.channels)
    warnings: list[str] = []
    live = [n.id for n in desc.nodes if n.id not in replayed]
    missing = [
        desc.missing_files[n] for n in live if n in desc.missing_files and n not in replace_paths
    ]
    if missing:  # the replayed nodes' files need not exist: feeders stand in for them
        raise ReplayError(f"{'; '.join(missing)} (a node that runs live needs its file)")
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
    # With --channels, only the channels it names can be missing a producer: naming what to
    # send (the topics of an imported bag one's own nodes read) leaves the others out.
    absent = {
        c: _absent_reason(c, desc)
        for c in sorted((chan_filter if channels else recorded) - fed_all - set(compared))
    }
    compared += list(absent)
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
            given = f"--replace {node.id}={replace_paths[node.id]}"
            if not new.is_file():
                raise ReplayError(f"{given}: no file {new}")
            if new.suffix != ".py" and not os.access(new, os.X_OK):
                raise ReplayError(
                    f"{given}: {new} is neither a .py file nor executable; name the node's .py "
                    f"file, or run `chmod +x {new}`"
                )
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
        absent=absent,
    )


def _absent_reason(channel: str, desc: Descriptor) -> str:
    node_id, _, output = channel.partition("/")
    where = f"the dataflow{f' {_shown(desc.path)}' if desc.path else ''}"
    if any(n.id == node_id for n in desc.nodes):
        missing = f"node `{node_id}` has no output `{output}` in {where}"
    else:
        missing = f"node `{node_id}` is not in {where}"
    return (
        f"{missing}, so nothing produced this recorded channel: replay a dataflow that has it, "
        "or name the channels to send or compare with --channels (the others are left out)"
    )


def with_feeder_options(plan: ReplayPlan, options: dict[str, dict[str, object]]) -> Descriptor:
    """The plan's dataflow with each feeder's options (JSON) in its environment."""
    nodes = [
        replace(n, env={**n.env, FEEDER_ENV: json.dumps(options[n.id])}) if n.id in options else n
        for n in plan.descriptor.nodes
    ]
    return replace(plan.descriptor, nodes=nodes)
