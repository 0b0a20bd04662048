"""Feeder: the node that stands in for one replayed node and sends its recorded messages.

Started by the daemon as the replayed node's ``path`` (same id, same outputs), with its options
as JSON in ``DORA_REPLAY_FEEDER`` (see ``FeederOptions``). It connects to the replay's control
socket, waits for the common start time, then sends each recorded message (same output id,
metadata and Arrow value):

- ``speed > 0``: at ``start + (publish_time - origin) / speed`` on the monotonic clock, sleeping
  until shortly before the deadline and spinning for the rest, so the send lands within tens of
  microseconds of it;
- ``speed == 0`` (lockstep): after ``node.lockstep_barrier(order_key=...)``, which returns once
  every live node is idle with nothing in flight and no other feeder has an earlier message.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

if __name__ == "__main__":  # run as a script: our folder must not shadow top-level modules
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]

_STOP_POLL_S = 0.05
_BARRIER_POLL_S = 0.25
_REPORT_EVERY_NS = 50_000_000  # progress reports to the replay process, at most every 50 ms


@dataclass
class FeederOptions:
    """``paths``: recording parts; ``channels``: what to send; ``start_ns``/``end_ns``: window of
    recorded log times (ns since epoch); ``origin_ns``: recorded time sent at the start;
    ``period_ns``: recorded length of one pass (``loop``); ``speed``: 0 for lockstep;
    ``order_keys``: lockstep, JSON file {channel: {seq: rank}}: the place of each message in
    the sending order of the whole replay; ``order_span``: how many ranks a pass has;
    ``skip``: lockstep, JSON file {channel: {seq: [node, ...]}}: the live nodes a message is
    not sent to (they dropped it when recorded: their input queue was full);
    ``spin_s``: busy-wait before each deadline (s); ``control``: the replay's control socket."""

    paths: list[str]
    channels: list[str]
    control: str
    start_ns: int | None = None
    end_ns: int | None = None
    origin_ns: int = 0
    period_ns: int = 0
    speed: float = 1.0
    loop: bool = False
    step: bool = False
    order_keys: str | None = None
    order_span: int = 0
    skip: str | None = None
    spin_s: float = 0.001


class _Control:
    """JSON lines to and from the replay process."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("r", encoding="utf-8")

    def send(self, **msg: Any) -> None:
        try:
            self.sock.sendall((json.dumps(msg) + "\n").encode())
        except OSError:
            pass

    def recv(self) -> dict[str, Any]:
        line = self.file.readline()
        return json.loads(line) if line else {}


class Feeder:
    def __init__(self, opts: FeederOptions) -> None:
        from dora_runtime.node import Node

        self.opts = opts
        self.node = Node()
        self.ctl = _Control(opts.control)
        self.stopped = False
        self.complete = False  # sent its whole schedule (a replay stopped early did not)
        self.lateness_ns: list[int] = []
        self.sent = 0
        self.per_channel: dict[str, int] = dict.fromkeys(opts.channels, 0)
        self.keys: dict[str, dict[str, int]] = {}
        if opts.order_keys:
            with open(opts.order_keys, encoding="utf-8") as f:
                self.keys = json.load(f)
        self.skip: dict[str, dict[str, list[str]]] = {}
        if opts.skip:
            with open(opts.skip, encoding="utf-8") as f:
                self.skip = json.load(f)
        self.last_key = 0

    def check_stop(self) -> bool:
        while (event := self.node.try_recv()) is not None:
            if event["type"] == "STOP":
                self.stopped = True
        return self.stopped

    def wait_until(self, deadline_ns: int) -> bool:
        spin_ns = int(self.opts.spin_s * 1e9)
        while True:
            remain = deadline_ns - time.monotonic_ns()
            if remain <= spin_ns:
                break
            if self.check_stop():
                return False
            time.sleep(min((remain - spin_ns) / 1e9, _STOP_POLL_S))
        while time.monotonic_ns() < deadline_ns:
            pass
        return True

    def barrier(self, key: int) -> bool:
        key = max(key, self.last_key)
        self.last_key = key
        while not self.node.lockstep_barrier(timeout=_BARRIER_POLL_S, order_key=key):
            if self.check_stop():
                return False
        return True

    def in_order(self, messages: Any) -> Any:
        """``(message, rank)`` in sending order. Timed replays send in recorded order (rank 0);
        lockstep replays by rank, which may put a message of this node before one logged
        earlier (see ``replay._lockstep_ranks``): this reads ahead only as far as that takes."""
        if self.opts.speed > 0:
            for m in messages:
                yield m, 0
            return
        ranks = self.keys
        mine = sorted(r for c in self.opts.channels for r in ranks.get(c, {}).values())
        pending: dict[int, Any] = {}
        pos = 0
        for m in messages:
            rank = ranks.get(m.channel, {}).get(str(m.seq))
            if rank is None:  # not in the schedule (the same window was read): keep its place
                yield m, mine[pos - 1] if pos else 0
                continue
            pending[rank] = m
            while pos < len(mine) and mine[pos] in pending:
                yield pending.pop(mine[pos]), mine[pos]
                pos += 1
        for rank in sorted(pending):
            yield pending[rank], rank

    def run(self) -> None:
        from dora_replay._recording import open as open_recording
        from dora_replay._values import short

        o = self.opts
        rec = open_recording(o.paths)
        # read the first chunk before the start, so the first deadline is not spent decoding
        pending = rec.iter_messages(o.channels, o.start_ns, o.end_ns)
        first = list(itertools.islice(pending, 1))
        self.ctl.send(hello=self.node.id)
        start = self.ctl.recv().get("start")
        if start is None:
            rec.close()
            return
        n_pass = 0
        next_report = 0
        reached = 0  # the latest recorded time sent
        try:
            while not self.stopped:
                if n_pass == 0:
                    messages = itertools.chain(first, pending)
                else:
                    messages = rec.iter_messages(o.channels, o.start_ns, o.end_ns)
                for m, rank in self.in_order(messages):
                    offset = max(0, m.publish_time_ns - o.origin_ns)
                    if o.speed > 0:
                        deadline = start + int((n_pass * o.period_ns + offset) / o.speed)
                        if not self.wait_until(deadline):
                            break
                    else:
                        deadline = 0
                        if not self.barrier(n_pass * o.order_span + rank):
                            break
                    if o.step:
                        desc = (
                            f"{m.channel} seq {m.seq} at t={offset / 1e9:.3f}s: {short(m.data)}"
                            + (f" metadata {short(m.metadata, 100)}" if m.metadata else "")
                        )
                        self.ctl.send(step=self.node.id, desc=desc)
                        if not self.ctl.recv().get("go"):
                            self.stopped = True
                            break
                    now = time.monotonic_ns()
                    md = {k: v for k, v in m.metadata.items() if k != "timestamp"}
                    output = m.channel.split("/", 1)[1]
                    dropped_by = (
                        self.skip.get(m.channel, {}).get(str(m.seq)) if not n_pass else None
                    )
                    if dropped_by:
                        self.node._send_output_except(
                            output, m.data, md or None, frozenset(dropped_by)
                        )
                    else:
                        self.node.send_output(output, m.data, md or None)
                    if deadline:
                        self.lateness_ns.append(now - deadline)
                    self.sent += 1
                    self.per_channel[m.channel] += 1
                    now = time.monotonic_ns()
                    if now >= next_report or o.step or o.speed == 0:
                        next_report = now + _REPORT_EVERY_NS
                        reached = max(reached, offset + n_pass * o.period_ns)  # lockstep reorders
                        self.ctl.send(sent=self.sent, t=reached)
                        if self.check_stop():
                            break
                else:
                    self.complete = True  # every message of the pass was sent
                n_pass += 1
                if not o.loop:
                    break
        finally:
            rec.close()
            self.ctl.send(
                done=self.node.id,
                sent=self.sent,
                complete=self.complete,
                per_channel=self.per_channel,
                lateness_ns=self.lateness_ns,
            )
            self.node.close()


def main() -> int:
    from dora_replay._plan import FEEDER_ENV

    opts = FeederOptions(**json.loads(os.environ[FEEDER_ENV]))
    sys.setswitchinterval(0.0002)  # the node's pump thread must not hold the GIL past a deadline
    Feeder(opts).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
