"""The recorder: a tap process beside the daemon that writes what nodes send to a ``.dora`` file.

``recorder_tap(...)`` builds the ``TapSpec`` the daemon starts (``dora run --record``,
``dora record``); the process itself runs ``main()``. A node's send only ever writes to the
recorder's socket: decoding, compression and disk I/O happen in this process, on the writer's
threads. Messages the recorder cannot keep (it fell behind by more than its queue, or the writer's
buffer limit) are counted per channel and stored in the file's statistics.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dora_replay._sink import unwritable
from dora_replay._units import human_duration, human_size
from dora_replay.errors import RecordingError

if TYPE_CHECKING:
    from dora_replay._writer import Writer
    from dora_runtime.descriptor import Descriptor
    from dora_runtime.tap import TapClient, TapSpec

OPTIONS_ENV = "DORA_RECORD_OPTIONS"
RECORDER_ID = "dora-record"
RECORDER_NICE = 10
_OVERWRITE_KEY = "overwrite"
"""Key in the ``OPTIONS_ENV`` JSON: the recorder may replace an existing output (``--overwrite``)."""


@dataclass
class RecordOptions:
    """What to record and how. Sizes in bytes, durations in seconds.

    ``replace_parts``: when the output may be overwritten, an unsplit recording also deletes
    the parts ``out_001.dora``... of an earlier split recording of that name (``dora record
    --overwrite`` asks for it; a split recording always deletes them). Off by default, so a
    program that replaces its own output file (``dora replay --out``) never deletes the parts
    of a recording it did not write, such as the one it replays."""

    output: str
    compression: str = "zstd"
    chunk_size_bytes: int = 4 << 20
    split_size_bytes: int | None = None
    split_duration_s: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    max_buffer_bytes: int = 512 << 20
    replace_parts: bool = False


def select_channels(
    descriptor: Descriptor, nodes: list[str] | None = None, topics: list[str] | None = None
) -> list[str]:
    """``node/output`` channels to record: all by default, or those of ``nodes``, or ``topics``.

    Raises ``RecordingError`` naming an unknown node or topic and listing the valid ones.
    """
    every = [f"{n.id}/{o}" for n in descriptor.nodes for o in n.outputs]
    if topics:
        unknown = [t for t in topics if t not in every]
        if unknown:
            raise RecordingError(
                f"--topics names unknown output(s) {', '.join(unknown)}; "
                f"the dataflow has: {', '.join(every) or '(none)'}"
            )
        return list(dict.fromkeys(topics))
    if nodes:
        ids = {n.id for n in descriptor.nodes}
        unknown = [n for n in nodes if n not in ids]
        if unknown:
            raise RecordingError(
                f"--nodes names unknown node(s) {', '.join(unknown)}; "
                f"the dataflow has: {', '.join(sorted(ids))}"
            )
        return [c for c in every if c.split("/", 1)[0] in nodes]
    return every


def recorder_tap(
    descriptor: Descriptor, options: RecordOptions, channels: list[str], overwrite: bool = False
) -> TapSpec:
    """The tap the daemon starts to record ``channels`` into ``options.output``."""
    from dora_runtime.tap import TapSpec

    if not channels:
        raise RecordingError("nothing to record: the selected nodes declare no outputs")
    out = Path(options.output)
    if out.is_dir():
        raise RecordingError(f"cannot record to {out}: it is a folder; name a file like run.dora")
    if out.parent and not out.parent.exists():
        raise RecordingError(f"cannot record to {out}: folder {out.parent} does not exist")
    why = unwritable(out.parent)
    if why is not None:
        raise RecordingError(
            f"cannot record to {out}: no file can be created in {out.parent} ({why})"
        )
    if not overwrite:
        check_output_free(out)
    opts = dict(options.__dict__)
    opts["output"] = str(out.resolve())
    opts[_OVERWRITE_KEY] = overwrite
    return TapSpec(
        id=RECORDER_ID,
        command=[sys.executable, "-m", "dora_replay.recorder"],
        channels=channels,
        env={OPTIONS_ENV: json.dumps(opts)},
    )


def _splits(options: RecordOptions) -> bool:
    return options.split_size_bytes is not None or options.split_duration_s is not None


def check_output_free(out: Path) -> None:
    """Raise ``RecordingError`` when recording to ``out`` would replace a file or sit beside an
    earlier recording of the same name: ``out`` itself, or a part ``out_001.dora``... of an
    earlier split recording (a new split recording would overwrite some parts and leave the
    rest to be read with it; an unsplit one would leave two recordings under one name)."""
    from dora_replay._writer import existing_parts

    taken = [out] if out.exists() else []
    taken += existing_parts(out)
    if taken == [out]:
        raise RecordingError(
            f"{out} already exists; choose another name or pass --overwrite to replace it"
        )
    if taken:
        names = ", ".join(p.name for p in taken[:3]) + (", ..." if len(taken) > 3 else "")
        what = "files of an earlier" if out in taken else "parts of an earlier split"
        raise RecordingError(
            f"{out}: {what} recording exist ({names}); choose another name or pass "
            "--overwrite to replace them"
        )


def describe_output(opts: RecordOptions) -> str:
    """Where a recording goes, for people: ``/d/run.dora``, or for a split recording
    ``/d/run_001.dora, run_002.dora, ... (a new part every 10 min)``."""
    from dora_replay._writer import part_path

    out = Path(opts.output)
    if not _splits(opts):
        return str(out)
    when = []
    if opts.split_duration_s is not None:
        when.append(f"every {human_duration(opts.split_duration_s)}")
    if opts.split_size_bytes is not None:
        when.append(f"past {human_size(opts.split_size_bytes)}")
    return f"{part_path(out, 1)}, {part_path(out, 2).name}, ... (a new part {' or '.join(when)})"


def main() -> int:
    """Entry point of the recorder process (started by the daemon)."""
    from dora_runtime.tap import TapClient

    raw = json.loads(os.environ[OPTIONS_ENV])
    overwrite = bool(raw.pop(_OVERWRITE_KEY, True))
    opts = RecordOptions(**raw)
    # Lower priority than the nodes: on a busy robot the dataflow's own latency comes first;
    # the recorder buffers (and counts what it cannot keep) when it falls behind.
    with contextlib.suppress(OSError):
        os.nice(RECORDER_NICE)
    tap = TapClient()
    try:
        writer = _open(opts, tap, overwrite)
    except RecordingError as e:
        print(f"ERROR: {e}", flush=True)
        tap.close()
        return 1
    print(f"recording {len(tap.channels)} channel(s) to {describe_output(opts)}", flush=True)
    return _record(tap, writer, opts)


def _open(opts: RecordOptions, tap: TapClient, overwrite: bool) -> Writer:
    from dora_replay._writer import open_writer, remove_recording

    out = Path(opts.output)
    if not overwrite:
        check_output_free(out)  # here too: this may be another machine
    elif _splits(opts) or opts.replace_parts:
        # Old parts would otherwise read as the new recording's tail (split), or stay beside
        # it as another recording under the same name (unsplit).
        remove_recording(out)
    return open_writer(
        opts.output,
        tap.dataflow_yaml(),
        opts.metadata,
        compression=opts.compression,
        chunk_size_bytes=opts.chunk_size_bytes,
        split_size_bytes=opts.split_size_bytes,
        split_duration_s=opts.split_duration_s,
        max_buffer_bytes=opts.max_buffer_bytes,
    )


def _record(tap: TapClient, writer: Writer, opts: RecordOptions) -> int:
    reported: dict[str, int] = {}
    next_check = time.monotonic() + 1.0
    try:
        for msg in tap:
            writer.write(
                msg.channel,
                msg.value,
                log_time_ns=time.time_ns(),
                publish_time_ns=msg.publish_time_ns,
                seq=msg.seq,
                cause=msg.cause,
                metadata=msg.metadata,
                taken=msg.taken,
                took=msg.took,
            )
            del msg
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                _sync_drops(tap.drops, reported, writer)
    finally:
        _sync_drops(tap.drops, reported, writer)
        tap.close()
        writer.close()
    st = writer.stats
    dropped = sum(st.drops.values())
    parts = ", ".join(str(p) for p in st.parts) or opts.output
    print(
        f"recorded {st.messages} message(s) on {len(st.channels)} channel(s) to {parts} "
        f"({human_size(st.bytes_written)} on disk from {human_size(st.bytes_in)})",
        flush=True,
    )
    if dropped:
        print(f"WARNING: the recorder could not keep {dropped} message(s): {st.drops}", flush=True)
    return 0


def _sync_drops(now: dict[str, int], reported: dict[str, int], writer: object) -> None:
    for channel, total in now.items():
        delta = total - reported.get(channel, 0)
        if delta > 0:
            writer.add_drops(channel, delta)  # type: ignore[attr-defined]
            reported[channel] = total


if __name__ == "__main__":
    sys.exit(main())
