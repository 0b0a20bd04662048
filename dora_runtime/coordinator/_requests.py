"""The coordinator's CLI requests: start, stop, list, dataflow, daemons, logs, record, destroy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dora_runtime._ids import uuid7
from dora_runtime._ws_protocol import CoordinatorError, Message, Peer
from dora_runtime.coordinator.placement import place
from dora_runtime.coordinator.state import DataflowRow
from dora_runtime.daemon import DEFAULT_GRACE_S, TAP_GRACE_S

if TYPE_CHECKING:
    from dora_runtime.coordinator.server import Coordinator, Follower

PREPARE_TIMEOUT_S = 30.0


class Requests:
    """One method per CLI request type (``on_<type>``); each returns the reply's fields."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator

    def _resolve(self, ref: str) -> DataflowRow:
        row = self.c.state.resolve(ref)
        if row is None:
            known = [r.name for r in self.c.state.dataflows(active_only=True)]
            raise CoordinatorError(
                f"no dataflow named or with id `{ref}`; running: {', '.join(known) or '(none)'}"
            )
        return row

    async def on_ping(self, peer: Peer, msg: Message) -> dict[str, Any]:
        return {"pid": __import__("os").getpid()}

    async def on_list(self, peer: Peer, msg: Message) -> dict[str, Any]:
        return {"dataflows": [r.summary() for r in self.c.state.dataflows()]}

    async def on_dataflow(self, peer: Peer, msg: Message) -> dict[str, Any]:
        """One dataflow (by name, id or unique id prefix): its ``list`` row and the path of its
        dataflow file (``dora record`` stores it, so that a replay finds the node files)."""
        row = self._resolve(msg["dataflow"])
        return {**row.summary(), "descriptor_path": row.descriptor_path}

    async def on_daemons(self, peer: Peer, msg: Message) -> dict[str, Any]:
        rows = self.c.state.daemons()
        for r in rows:
            r["connected"] = r["machine_id"] in self.c.daemons
        return {"daemons": rows}

    async def on_start(self, peer: Peer, msg: Message) -> dict[str, Any]:
        from dora_runtime._descriptor_parse import parse_descriptor

        path = Path(msg.get("descriptor_path") or "dataflow.yml")
        descriptor = parse_descriptor(msg["yaml"], base_dir=path.parent, path=path)
        links = self.c.daemons
        plan = place(descriptor, [d.info() for d in links.values()], msg.get("taps"))
        name = msg.get("name")
        if name and self.c.state.name_in_use(name):
            raise CoordinatorError(f"a dataflow named `{name}` is already running; pick another")
        dataflow_id = uuid7()
        if not name:
            name = path.stem if not self.c.state.name_in_use(path.stem) else None
            name = name or f"{path.stem}-{dataflow_id[-6:]}"
        grace_s = float(msg.get("grace_s") or DEFAULT_GRACE_S)
        self.c.start_grace[dataflow_id] = grace_s
        self.c.state.insert_dataflow(
            dataflow_id, name, str(path), msg["yaml"], plan.to_json(), plan.placement
        )
        base = {"dataflow_id": dataflow_id, "name": name}
        machines = list(plan.machines)

        not_started: dict[str, str] = {}

        async def each(step: str, extra: dict[str, dict[str, Any]]) -> list[str]:
            async def one(m: str) -> str | None:
                link = links.get(m)
                if link is None:
                    return f"daemon `{m}` disconnected"
                try:
                    answer = await link.peer.request(
                        {"type": step, **base, **extra.get(m, {})}, PREPARE_TIMEOUT_S
                    )
                except CoordinatorError as e:
                    return f"daemon `{m}`: {e}"
                not_started.update(answer.get("not_started") or {})
                return None

            return [e for e in await asyncio.gather(*(one(m) for m in machines)) if e]

        prepare = {
            m: {
                "descriptor_path": str(path),
                "yaml": msg["yaml"],
                "grace_s": grace_s,
                **p.to_json(),
            }
            for m, p in plan.machines.items()
        }
        errors = await each("prepare", prepare)
        if not errors:
            errors = await each("spawn", {})
        if errors:
            for m in machines:
                self.c.send(m, {"type": "stop", "dataflow_id": dataflow_id, "grace_s": 1.0})
            reason = "; ".join(errors)
            self.c.finalize(dataflow_id, "failed", f"could not start: {reason}")
            raise CoordinatorError(f"dataflow `{name}` could not start: {reason}")
        row = self.c.state.get(dataflow_id)
        if row is not None and row.status == "starting":
            self.c.state.set_status(dataflow_id, "running")
        self.c.say(f"dataflow {name} ({dataflow_id}) started on {', '.join(machines)}")
        if not_started:  # the node_status events say it too; they may still be on their way
            self.c.add_failures(dataflow_id, not_started)
        return {
            "id": dataflow_id,
            "name": name,
            "placement": plan.placement,
            "not_started": not_started,
        }

    async def on_stop(self, peer: Peer, msg: Message) -> dict[str, Any]:
        row = self._resolve(msg["dataflow"])
        grace_s = msg.get("grace_s")
        if row.active:
            self.c.state.set_status(row.id, "stopping")
            for m in row.machines:
                self.c.send(m, {"type": "stop", "dataflow_id": row.id, "grace_s": grace_s})
            # no grace given: the daemons use the dataflow's own (from start), unknown here
            # after a coordinator restart, so wait long enough for any
            known = grace_s if grace_s is not None else self.c.start_grace.get(row.id, 120.0)
            limit = float(known) + TAP_GRACE_S + 5
            try:
                await asyncio.wait_for(self.c.done_event(row.id).wait(), limit)
            except TimeoutError:
                raise CoordinatorError(
                    f"dataflow `{row.name}` did not stop within {limit:g} s"
                ) from None
        final = self.c.state.get(row.id)
        assert final is not None
        return {
            "id": final.id,
            "name": final.name,
            "status": final.status,
            "reason": final.reason,
            "was_active": row.active,
        }

    async def on_logs(self, peer: Peer, msg: Message) -> dict[str, Any]:
        from dora_runtime.coordinator.server import Follower

        row = self._resolve(msg["dataflow"])
        node = msg.get("node")
        placement = {k: v["machine_id"] for k, v in row.nodes.items()}
        if node is not None and placement and node not in placement:
            raise CoordinatorError(
                f"dataflow `{row.name}` has no node `{node}`; its nodes: {', '.join(placement)}"
            )
        machines = [placement[node]] if node in placement else row.machines
        follow = bool(msg.get("follow")) and row.active
        lines: list[list[str]] = []
        missing = []
        follower = Follower(peer, row.id, node)
        for m in machines:
            link = self.c.daemons.get(m)
            if link is None:
                missing.append(m)
                continue
            answer = await link.peer.request(
                {"type": "logs", "dataflow_id": row.id, "node": node, "follow": follow}
            )
            lines += answer["lines"]
            if answer.get("following"):
                follower.machines.append(m)
        if follow and follower.machines:
            self.c.followers.append(follower)
        return {
            "lines": lines,
            "following": bool(follow and follower.machines),
            "unavailable": missing,
            "status": row.status,
        }

    async def unfollow(self, f: Follower) -> None:
        if f in self.c.followers:
            self.c.followers.remove(f)
        for m in f.machines:
            self.c.send(m, {"type": "unfollow", "dataflow_id": f.dataflow_id})

    async def on_record(self, peer: Peer, msg: Message) -> dict[str, Any]:
        """Attach a recorder (``msg["tap"]``, a TapSpec) to a running dataflow."""
        row = self._resolve(msg["dataflow"])
        if not row.active:
            raise CoordinatorError(f"dataflow `{row.name}` is {row.status}; nothing to record")
        if len(row.machines) != 1:
            raise CoordinatorError(
                f"dataflow `{row.name}` runs on {len(row.machines)} machines; attaching a "
                "recorder to a running multi-machine dataflow is not supported yet: start it "
                "with `dora start --record FILE`"
            )
        link = self.c.daemons.get(row.machines[0])
        if link is None:
            raise CoordinatorError(f"daemon `{row.machines[0]}` is not connected")
        answer = await link.peer.request(
            {"type": "record", "dataflow_id": row.id, "tap": msg["tap"]}, timeout_s=30
        )
        return {"name": row.name, "channels": answer.get("channels", [])}

    async def on_destroy(self, peer: Peer, msg: Message) -> dict[str, Any]:
        """Stop every dataflow, shut the daemons down, then exit."""
        grace_s = msg.get("grace_s")
        rows = self.c.state.dataflows(active_only=True)
        stops = [self.on_stop(peer, {"dataflow": r.id, "grace_s": grace_s}) for r in rows]
        results = await asyncio.gather(*stops, return_exceptions=True)
        errors = [str(r) for r in results if isinstance(r, Exception)]
        for machine, link in list(self.c.daemons.items()):
            try:
                await link.peer.request({"type": "shutdown"}, timeout_s=5)
            except CoordinatorError as e:
                errors.append(f"daemon `{machine}`: {e}")
        for d in self.c.state.daemons():  # listed again when they register again
            self.c.state.remove_daemon(d["machine_id"])
        self.c.shutdown_soon()
        return {"stopped": [r.name for r in rows], "errors": errors}
