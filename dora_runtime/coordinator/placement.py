"""Which daemon runs which node, and which outputs cross machines.

Rules, in order, for each node:

1. ``deploy: {machine: ID}``: the daemon whose machine id is ``ID``;
2. ``deploy: {labels: {k: v}}``: the first daemon (in registration order) carrying every label;
3. no ``deploy``: the daemon with machine id ``local`` (the one ``dora up`` starts) if connected,
   else the first daemon that registered.

An impossible placement raises ``PlacementError`` before anything starts. Taps (the recorder of
``dora start --record``) go to the default daemon. An output crosses machines when one of its
receivers (or a tap reading it) is on another machine than its sender: the sender's daemon then
publishes it over Zenoh (``publish``) and the receivers' daemons subscribe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dora_runtime.descriptor import Descriptor
from dora_runtime.errors import DoraError

DEFAULT_MACHINE = "local"


class PlacementError(DoraError):
    """A node cannot be placed on any connected daemon."""


@dataclass
class MachinePlan:
    """What one daemon runs of a dataflow. ``publish``: ``node/output`` channels it sends to
    other machines; ``taps``: tap specs as JSON dicts (``id, command, channels, env, queue_size``)."""

    nodes: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    taps: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "publish": self.publish, "taps": self.taps}


@dataclass
class Plan:
    placement: dict[str, str]
    machines: dict[str, MachinePlan]

    def to_json(self) -> dict[str, Any]:
        return {m: p.to_json() for m, p in self.machines.items()}


def place(
    descriptor: Descriptor,
    daemons: list[dict[str, Any]],
    taps: list[dict[str, Any]] | None = None,
) -> Plan:
    """Place every node of ``descriptor`` on one of ``daemons`` (``machine_id``, ``labels``;
    registration order). Raises ``PlacementError`` listing every node that cannot be placed."""
    if not daemons:
        raise PlacementError("no daemon is connected; start one with `dora up` or `dora daemon`")
    ids = [d["machine_id"] for d in daemons]
    default = DEFAULT_MACHINE if DEFAULT_MACHINE in ids else ids[0]
    placement: dict[str, str] = {}
    problems: list[str] = []
    for node in descriptor.nodes:
        machine, labels = node.deploy.machine, node.deploy.labels
        if machine:
            if machine not in ids:
                problems.append(
                    f"node `{node.id}` is placed on machine `{machine}`, but no daemon with that "
                    f"machine id is connected (connected: {', '.join(ids)}); start one with "
                    f"`dora daemon --machine-id {machine}` or fix `deploy.machine`"
                )
                continue
            placement[node.id] = machine
        elif labels:
            match = [d["machine_id"] for d in daemons if _has_labels(d.get("labels", {}), labels)]
            if not match:
                wanted = ", ".join(f"{k}={v}" for k, v in labels.items())
                have = "; ".join(
                    f"{d['machine_id']}: {_fmt_labels(d.get('labels', {}))}" for d in daemons
                )
                problems.append(
                    f"node `{node.id}` needs a daemon with labels {wanted}, but none has them "
                    f"({have}); start one with `dora daemon --labels {wanted.replace(', ', ' ')}`"
                )
                continue
            placement[node.id] = match[0]
        else:
            placement[node.id] = default
    if problems:
        raise PlacementError("cannot place the dataflow: " + "; ".join(problems))
    machines: dict[str, MachinePlan] = {}
    for node_id, machine in placement.items():
        machines.setdefault(machine, MachinePlan()).nodes.append(node_id)
    readers: list[tuple[str, str]] = []  # (channel, machine of a reader)
    for node in descriptor.nodes:
        for inp in node.inputs.values():
            if not inp.is_timer:
                readers.append((inp.source, placement[node.id]))
    for tap in taps or []:
        machines.setdefault(default, MachinePlan()).taps.append(tap)
        readers += [(channel, default) for channel in tap["channels"]]
    for channel, reader_machine in readers:
        sender_machine = placement.get(channel.split("/", 1)[0])
        if sender_machine is None or sender_machine == reader_machine:
            continue
        publish = machines[sender_machine].publish
        if channel not in publish:
            publish.append(channel)
    return Plan(placement=placement, machines=machines)


def _has_labels(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def _fmt_labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "(no labels)"
