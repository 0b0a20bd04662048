"""Split recordings and index use: parts naming, opening parts, reading only needed chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import dora_replay
from dora_replay._reader import PartFile

YAML = "nodes: []\n"


def write_split(path: Path, n: int = 300, **kw: object) -> dora_replay.Writer:
    with dora_replay.open_writer(path, YAML, {"robot": "r2"}, chunk_size_bytes=4000, **kw) as w:
        for i in range(n):
            w.write(
                "cam/image",
                pa.array(np.full(100, i, np.int64)),
                log_time_ns=i * 10**7,
                publish_time_ns=i,
                seq=i,
            )
    return w


def test_split_by_size_names_parts_and_reads_them_in_order(tmp_path: Path) -> None:
    base = tmp_path / "run.dora"
    w = write_split(base, split_size_bytes=3_000)
    parts = sorted(tmp_path.glob("run_*.dora"))
    assert len(parts) > 2 and w.paths == parts and not base.exists()
    assert [p.name for p in parts][:3] == ["run_001.dora", "run_002.dora", "run_003.dora"]
    ids = set()
    for i, p in enumerate(parts, start=1):
        with _open(p) as part:
            assert part.header.part == i and part.has_footer
            ids.add(part.header.recording_id)
    assert len(ids) == 1
    for source in (base, parts[0], str(tmp_path / "run_*.dora"), parts):
        with dora_replay.open(source) as rec:
            assert [m.seq for m in rec.iter_messages()] == list(range(300))
            assert rec.metadata == {"robot": "r2"} and len(rec.paths) == len(parts)
    with dora_replay.open(parts[1]) as rec:  # a later part alone reads just that part
        assert len(rec.paths) == 1 and 0 < rec.message_count < 300


class _open:  # noqa: N801 - context manager closing a PartFile
    def __init__(self, p: Path) -> None:
        self.part = PartFile(p)

    def __enter__(self) -> PartFile:
        return self.part

    def __exit__(self, *exc: object) -> None:
        self.part.close()


def test_split_by_duration(tmp_path: Path) -> None:
    base = tmp_path / "run.dora"
    w = write_split(base, split_duration_s=1.0)  # 300 messages over 3 s of log time
    assert 3 <= len(w.paths) <= 4
    for p in w.paths:
        with _open(p) as part:
            span = max(c.meta.end_log_time_ns for c in part.chunks) - min(
                c.meta.start_log_time_ns for c in part.chunks
            )
            assert span < 1.1e9
    with dora_replay.open(base) as rec:
        assert rec.message_count == 300


def test_one_channel_read_reads_only_its_chunks(tmp_path: Path) -> None:
    path = tmp_path / "multi.dora"
    rng = np.random.default_rng(0)
    with dora_replay.open_writer(path, YAML, chunk_size_bytes=64 << 10, compression="none") as w:
        for i in range(200):
            for c in ("cam/image", "lidar/points", "imu/data"):
                size = 2000 if c != "imu/data" else 8
                w.write(c, pa.array(rng.random(size)), log_time_ns=i, publish_time_ns=i, seq=i)
    size = path.stat().st_size
    with dora_replay.open(path) as rec:
        opened = rec.bytes_read
        imu = rec.channels["imu/data"]
        got = list(rec.iter_messages(channels="imu/data"))
        read = rec.bytes_read - opened
    assert len(got) == 200
    imu_chunks = imu.compressed_bytes + imu.chunk_count * 100
    assert read <= imu_chunks, (read, imu_chunks)
    assert opened + read < size / 20  # header + footer + imu chunks, not the camera/lidar ones


def test_time_window_reads_only_overlapping_chunks(tmp_path: Path) -> None:
    path = tmp_path / "w.dora"
    with dora_replay.open_writer(path, YAML, chunk_size_bytes=10_000) as w:
        for i in range(5000):
            w.write("a/b", pa.array([i] * 4), log_time_ns=i, publish_time_ns=i, seq=i)
    with dora_replay.open(path) as rec:
        opened = rec.bytes_read
        got = [m.seq for m in rec.iter_messages(start=2000, end=2100)]
        read = rec.bytes_read - opened
        total = rec.channels["a/b"].compressed_bytes
    assert got == list(range(2000, 2100))
    assert read < total / 4


def test_unknown_channel_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.dora"
    write_split(path, n=3)
    with (
        dora_replay.open(path) as rec,
        pytest.raises(dora_replay.RecordingError, match="recorded: cam/image"),
    ):
        list(rec.iter_messages(channels="nope/x"))
