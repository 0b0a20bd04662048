"""The benchmark keeps running (``--quick``) and the public surface of dora_replay stays pinned."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import dora_replay

ROOT = Path(__file__).resolve().parents[2]


def test_bench_record_format_quick_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "record_format.py"),
            "--quick",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["workload", "op"]
    for workload in ("camera 1 MiB", "imu 64 B"):
        for op in ("write", "read"):
            for fmt in ("mcap", "dora:1"):
                assert any(
                    row.startswith(workload) and f" {op} " in row and f" {fmt} " in row
                    for row in lines
                ), (
                    workload,
                    op,
                    fmt,
                )
    assert list(tmp_path.iterdir()) == []


def test_public_surface() -> None:
    for name in (
        "open",
        "open_writer",
        "Recording",
        "Writer",
        "WriterStats",
        "Message",
        "ChannelInfo",
        "Problem",
        "FORMAT_VERSION",
        "RecordingError",
        "RecordingCorruptError",
        "RecordingNotFoundError",
    ):
        assert name in dora_replay.__all__ and hasattr(dora_replay, name), name
    public = {
        n
        for n in dir(dora_replay)
        if not n.startswith("_") and not isinstance(getattr(dora_replay, n), types.ModuleType)
    }
    assert set(dora_replay.__all__) == public
    assert dora_replay.Message._fields == (
        "channel",
        "data",
        "log_time_ns",
        "publish_time_ns",
        "seq",
        "cause",
        "metadata",
        "taken",
        "took",
    )
