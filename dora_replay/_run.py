"""One execution of a replay dataflow: daemon, feeders' control socket, capture tap, progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

from dora_replay._control import Controller, stdin_stepper
from dora_replay._plan import ReplayPlan, with_feeder_options
from dora_replay._progress import Progress, Snapshot
from dora_replay._recording import Message, Recording
from dora_replay._recording import open as open_recording
from dora_replay._result import REPLAY_ITSELF
from dora_replay.compare import read_channels
from dora_runtime.daemon import node_list, signal_name

_READY_TIMEOUT_S = 30.0
_LOG_TAIL = 15


@dataclass
class Schedule:
    """What the feeders will send: per fed channel the recorded seqs in order; the recorded time
    origin and length (ns); ``order_keys``: lockstep only, each fed message's place in the
    sending order, {channel: {seq: rank}} (ranks 0 to count - 1)."""

    seq_maps: dict[str, list[int]]
    origin_ns: int
    total_ns: int
    count: int
    order_keys: dict[str, dict[str, int]]
    timers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Lockstep: per timer source of the live nodes, the ticks to send as (seq, order key)."""
    notes: list[str] = field(default_factory=list)
    tick_times: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per timer source of the live nodes, the ticks as (seq, recorded time ns)."""
    skip: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Lockstep: {channel: {seq: [node]}}, the messages a live node dropped when recorded."""


def _runs(seqs: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in seqs:
        if runs and runs[-1][0] + runs[-1][1] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    return runs


def _timer_reachable(plan: ReplayPlan) -> set[str]:
    """Nodes that never run out of input: fed by a timer, directly or through others."""
    desc = plan.descriptor
    return set(
        desc.downstream(n.id for n in desc.nodes if any(i.is_timer for i in n.inputs.values()))
    )


def _log_tail(log_dir: Path, node: str) -> str:
    try:
        lines = (log_dir / f"log_{node}.txt").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(f"    {ln}" for ln in lines[-_LOG_TAIL:]) or "    (no output)"


_STALL_NOTE_S = 10.0


class _Stall:
    """Lockstep: says once which nodes hold the replay when nothing was sent for a while (a node
    that never asks for input, or hangs, would otherwise stall it without a word)."""

    def __init__(self) -> None:
        self._sent = -1
        self._since = 0.0
        self._said: list[str] = []

    def note(self, now: float, sent: int, busy: list[str]) -> str | None:
        if sent != self._sent:
            self._sent, self._since, self._said = sent, now, []
            return None
        if not busy or busy == self._said or now - self._since < _STALL_NOTE_S:
            return None
        self._said = list(busy)
        return (
            f"replay: waiting {now - self._since:.0f} s for {node_list(busy)}: a lockstep replay "
            "goes on only once every live node waits in node.next() and has taken what was sent "
            "to it (stop with Ctrl-C; --stop-after bounds the whole replay)"
        )


class Run:
    """One execution of the replay dataflow: daemon, control socket, capture, progress."""

    def __init__(
        self,
        rec: Recording,
        plan: ReplayPlan,
        sched: Schedule,
        window: tuple[int | None, int | None],
        tmp: Path,
        *,
        speed: float,
        lockstep: bool,
        loop: bool,
        step: bool,
        out: Any,
        progress: bool | None,
        printer: Any,
    ) -> None:
        self.rec, self.plan, self.sched, self.tmp = rec, plan, sched, tmp
        self.speed, self.lockstep, self.loop = speed, lockstep, loop
        mode = Progress.choose(progress)
        # stepping: prompts and typed answers need the lines, so no panel and no periodic line
        self.progress = Progress("plain" if step and mode == "rich" else mode, periodic=not step)
        self.user_printer = printer
        self._timed_out = False
        self._busy: list[str] = []  # lockstep: the live nodes the next step waits for
        self._stopping = False
        self.capture = Path(out) if out else tmp / "replayed.dora"
        self.capture_all = out is not None
        feeders = set(plan.replayed)
        echo = (
            self.progress.print
            if self.progress.mode != "off"
            else (lambda line: print(line, flush=True))
        )
        self.controller = Controller(
            str(tmp / "control.sock"), feeders, stdin_stepper(echo) if step else None
        )
        keys_path = tmp / "order_keys.json"
        keys_path.write_text(json.dumps(sched.order_keys), encoding="utf-8")
        skip_path = tmp / "skip.json"
        skip_path.write_text(json.dumps(sched.skip), encoding="utf-8")
        period = sched.total_ns + (sched.total_ns // max(1, sched.count))
        options = {
            node: {
                "paths": [str(p.resolve()) for p in rec.paths],
                "channels": chans,
                "control": self.controller.path,
                "start_ns": window[0],
                "end_ns": window[1],
                "origin_ns": sched.origin_ns,
                "period_ns": max(period, 1),
                "speed": 0.0 if lockstep else speed,
                "loop": loop,
                "step": step,
                "order_keys": str(keys_path) if lockstep else None,
                "skip": str(skip_path) if lockstep and sched.skip else None,
                "order_span": sched.count,
            }
            for node, chans in plan.fed.items()
        }
        self.descriptor = with_feeder_options(plan, options)
        if self.descriptor.path is None:  # nodes and the capture read the dataflow from a file
            yml = tmp / "dataflow.yml"
            yml.write_text(self.descriptor.text or self.rec.dataflow_yaml, encoding="utf-8")
            self.descriptor = dc_replace(self.descriptor, path=yml)

    def _timed_ticks(self) -> dict[str, list[tuple[int, int]]]:
        """Timed replay: each live timer's ticks as (seq, ns after the feeders' start)."""
        origin, speed = self.sched.origin_ns, self.speed
        return {
            src: [(seq, max(0, int((t - origin) / speed))) for seq, t in ticks]
            for src, ticks in self.sched.tick_times.items()
        }

    def _printer(self, source: str, line: str) -> None:
        from dora_replay.recorder import RECORDER_ID

        if source == RECORDER_ID and not self.capture_all and str(self.tmp) in line:
            return  # the capture in a temporary file: nothing the user asked for (no --out)
        if self.user_printer is not None:
            self.user_printer(source, line)

    def _taps(self) -> list[Any]:
        from dora_replay.recorder import RecordOptions, recorder_tap

        desc = self.descriptor
        live = set(self.plan.live)
        channels = [
            f"{n.id}/{o}" for n in desc.nodes for o in n.outputs if self.capture_all or n.id in live
        ]
        if not channels:
            return []
        meta = dict(self.rec.metadata)
        meta["replay.source"] = str(self.rec.paths[0].resolve())
        meta["replay.seq_map"] = json.dumps({c: _runs(s) for c, s in self.sched.seq_maps.items()})
        meta["replay.speed"] = f"{self.speed:g}"
        opts = RecordOptions(output=str(self.capture), metadata=meta)
        return [recorder_tap(desc, opts, channels, overwrite=True)]  # --out is replaced each run

    def execute(
        self, log_dir: Any, timeout_s: float | None, grace_s: float
    ) -> tuple[dict[str, list[Message]], dict[str, str], dict[str, int], Path, bool]:
        from dora_runtime.daemon import Daemon, install_interrupt_handlers

        taps = self._taps()
        daemon = Daemon(
            self.descriptor,
            log_dir=Path(log_dir) if log_dir else None,
            grace_s=grace_s,
            printer=self._printer,
            taps=taps,
            lockstep=self.lockstep,
            feeders=set(self.plan.replayed),
            lockstep_timers=self.sched.timers if self.lockstep else None,
            timed_ticks=None if self.lockstep else self._timed_ticks(),
            replay_start=self.controller.wait_start,
            timer_speed=1.0 if self.lockstep else self.speed,
        )
        timed_out = False

        async def main() -> Any:
            nonlocal timed_out
            await self.controller.open()
            handlers = install_interrupt_handlers(daemon)
            runner = asyncio.create_task(daemon.run())
            try:
                timed_out = await self._supervise(daemon, runner, timeout_s)
                return await runner
            finally:
                self.controller.close()
                self.progress.close()
                loop = asyncio.get_running_loop()
                for sig in handlers:
                    loop.remove_signal_handler(sig)

        result = asyncio.run(main())
        failures = {
            node: f"{why}; last log lines:\n{_log_tail(result.log_dir, node)}"
            for node, why in result.failures.items()
        }
        if timed_out and not self.loop:
            waited = f" (it was waiting for {node_list(self._busy)})" if self._busy else ""
            failures[REPLAY_ITSELF] = f"did not finish within {timeout_s:g} s{waited}; stopped"
        replayed: dict[str, list[Message]] = {}
        if taps and self.capture.exists():
            with open_recording(self.capture) as cap:
                replayed = read_channels(cap)
        return replayed, failures, result.drops, result.log_dir, timed_out

    async def _supervise(
        self, daemon: Any, runner: asyncio.Task[Any], timeout_s: float | None
    ) -> bool:
        """Start the feeders once every node is up, show progress, stop when done."""
        t0 = time.monotonic()
        stop_sent = False
        endless = _timer_reachable(self.plan) & set(self.plan.live)
        feeders = set(self.plan.replayed)
        stall = _Stall()
        while not runner.done():
            nodes = daemon.nodes
            now = time.monotonic()
            if self.lockstep and self.controller.started and not stop_sent:
                self._busy = daemon.lockstep_waiting_on()
                note = stall.note(now, self.controller.messages_sent, self._busy)
                if note:
                    self.progress.print(note)
            if not self.controller.started:
                up = all(s.registered or s.exited for s in nodes.values())
                if (up and self.controller.all_hello) or now - t0 > _READY_TIMEOUT_S:
                    self.controller.start()
            feeders_exited = all(nodes[f].exited for f in feeders)
            # lockstep: the live nodes' timers tick on until the recording's last tick
            feeders_done = feeders_exited and (not self.lockstep or daemon.lockstep_timers_done())
            if not stop_sent and feeders_exited and self.controller.stopped_by_user:
                # `q` at a step: every fed message was handled (lockstep), nothing more comes
                daemon.request_stop()
                stop_sent = True
            if not stop_sent and not self.loop and feeders_done:
                waiting = {n for n, s in nodes.items() if not s.exited and s.tap is None}
                if waiting and waiting <= endless:
                    daemon.request_stop()
                    stop_sent = True
            if not stop_sent and timeout_s is not None and now - t0 > timeout_s:
                daemon.request_stop()
                stop_sent = True
                if not self.loop:
                    self.progress.print(f"replay: timeout after {timeout_s:g} s, stopping")
                self._timed_out = True
            if not stop_sent and self.progress.output_closed:  # `dora replay ... | head`
                daemon.request_stop()
                stop_sent = True
            self._stopping = stop_sent
            self.progress.update(self._snapshot(nodes))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(runner), 0.1)
        self.progress.update(self._snapshot(daemon.nodes))
        return self._timed_out

    def _snapshot(self, nodes: dict[str, Any]) -> Snapshot:
        status = {}
        for node in self.plan.live:
            s = nodes.get(node)
            if s is None:
                continue
            if not s.exited:
                status[node] = "running" if s.registered else "starting"
                if node in self._busy and not self._stopping:
                    status[node] = "busy (the replay waits for it)"
            elif s.returncode in (0, None):
                status[node] = "exited"
            else:
                status[node] = f"failed ({signal_name(s.returncode) or f'exit {s.returncode}'})"
        return Snapshot(
            elapsed_ns=self.controller.recorded_time_ns,
            total_ns=self.sched.total_ns,
            sent=self.controller.messages_sent,
            total=self.sched.count,
            status=status,
        )
