"""Round trips through real .dora files: every data kind the node API accepts, metadata, times."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dora_replay
from dora_runtime._codec import to_arrow

YAML = "nodes:\n  - id: cam\n    path: cam.py\n    outputs: [image]\n"

ARRAYS: dict[str, Any] = {
    "int8": pa.array([1, -2, None], pa.int8()),
    "int16": pa.array([1, -2, 3], pa.int16()),
    "int32": pa.array([1, None, 3], pa.int32()),
    "int64": pa.array([2**40, -1], pa.int64()),
    "uint8": pa.array([0, 255], pa.uint8()),
    "uint16": pa.array([0, 65535], pa.uint16()),
    "uint32": pa.array([0, 2**32 - 1], pa.uint32()),
    "uint64": pa.array([0, 2**64 - 1], pa.uint64()),
    "float16": pa.array(np.array([1.5, -2.0], np.float16)),
    "float32": pa.array([1.5, float("nan")], pa.float32()),
    "float64": pa.array([1e300, -0.0, None]),
    "bool": pa.array([True, False, None]),
    "string": pa.array(["a", "", None, "ünï"]),
    "large_string": pa.array(["x" * 10], pa.large_string()),
    "binary": pa.array([b"\x00\x01", None, b""]),
    "fixed_binary": pa.array([b"ab", b"cd"], pa.binary(2)),
    "list": pa.array([[1, 2], [], None, [3]]),
    "large_list": pa.array([[1.0], [2.0, 3.0]], pa.large_list(pa.float64())),
    "fixed_list": pa.array([[1, 2], [3, 4]], pa.list_(pa.int32(), 2)),
    "struct": pa.array([{"x": 1.0, "y": [1, 2], "name": "a"}, {"x": None, "y": [], "name": None}]),
    "nested": pa.array([{"p": {"q": [{"r": 1}]}}]),
    "timestamp": pa.array([1, 2], pa.timestamp("ns", tz="UTC")),
    "date": pa.array([1, 2], pa.date32()),
    "duration": pa.array([5], pa.duration("ms")),
    "decimal": pa.array([1], pa.decimal128(10, 2)),
    "map": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64())),
    "dictionary": pa.array(["a", "b", "a"]).dictionary_encode(),
    "null": pa.nulls(3),
    "empty": pa.array([], pa.float32()),
    "sliced": pa.array(range(10)).slice(3, 4),
    "numpy_image": to_arrow(np.arange(24, dtype=np.uint8).reshape(2, 4, 3)),
    "numpy_float": to_arrow(np.linspace(0, 1, 5)),
    "bytes": to_arrow(b"\x00raw bytes\xff"),
    "py_list": to_arrow([1, 2, 3]),
    "py_str_list": to_arrow(["a", "b"]),
}


def same(a: pa.Array, b: pa.Array) -> bool:
    """Equal type and values (NaN equal to NaN)."""
    return a.type == b.type and (a.equals(b) or repr(a.to_pylist()) == repr(b.to_pylist()))


def record(path: Path, messages: list[tuple[str, Any, dict[str, Any] | None]], **kw: Any) -> None:
    with dora_replay.open_writer(path, YAML, {"robot": "r2"}, **kw) as w:
        for i, (channel, data, meta) in enumerate(messages):
            w.write(
                channel,
                data,
                log_time_ns=1_000 + i,
                publish_time_ns=900 + i,
                seq=i,
                cause=f"in/{i}" if i % 2 else None,
                metadata=meta,
            )


@pytest.mark.parametrize("kind", sorted(ARRAYS))
def test_every_data_kind_round_trips(tmp_path: Path, kind: str) -> None:
    arr = ARRAYS[kind]
    path = tmp_path / "run.dora"
    record(path, [("node/out", arr, None), ("node/out", arr, {"k": 1})])
    with dora_replay.open(path) as rec:
        got = list(rec.iter_messages())
        assert [m.data.type for m in got] == [arr.type, arr.type]
        for m in got:
            assert same(m.data, arr)
            assert len(m.data) == len(arr)
        assert got[1].metadata == {"k": 1} and got[0].metadata == {}
        assert rec.problems == []


def test_native_python_data_is_converted_like_the_node_api(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    record(path, [("n/a", b"\x01\x02", None), ("n/a", image, None), ("n/a", [1.5, 2.5], None)])
    with dora_replay.open(path) as rec:
        got = [m.data for m in rec.iter_messages()]
    assert got[0].equals(pa.array([1, 2], pa.uint8()))
    assert got[1].equals(pa.array(image.reshape(-1)))
    assert got[2].equals(pa.array([1.5, 2.5]))


meta_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.dictionaries(st.text(max_size=10), meta_values, max_size=5), min_size=1, max_size=5)
)
def test_metadata_round_trips_losslessly(tmp_path: Path, metas: list[dict[str, Any]]) -> None:
    path = tmp_path / "meta.dora"
    record(path, [("n/o", pa.array([i]), m) for i, m in enumerate(metas)], fsync=False)
    with dora_replay.open(path) as rec:
        got = [m.metadata for m in rec.iter_messages()]
    assert got == metas
    for g, m in zip(got, metas, strict=True):
        for k in m:
            assert type(g[k]) is type(m[k])


def test_metadata_that_is_not_json_safe_is_refused_at_write(tmp_path: Path) -> None:
    with dora_replay.open_writer(tmp_path / "x.dora", YAML) as w:
        with pytest.raises(TypeError, match="bool/int/float/str/list"):
            w.write(
                "n/o",
                pa.array([1]),
                log_time_ns=1,
                publish_time_ns=1,
                seq=0,
                metadata={"x": object()},
            )


def test_header_fields_times_seq_and_cause(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    before = time.time_ns()
    record(path, [("cam/image", pa.array([i]), None) for i in range(5)])
    with dora_replay.open(path) as rec:
        assert rec.dataflow_yaml == YAML
        assert rec.metadata == {"robot": "r2"}
        assert before <= rec.start_time_ns <= time.time_ns()
        assert rec.header.format_version == dora_replay.FORMAT_VERSION
        msgs = list(rec.iter_messages())
    assert [(m.log_time_ns, m.publish_time_ns, m.seq, m.cause) for m in msgs] == [
        (1000 + i, 900 + i, i, f"in/{i}" if i % 2 else None) for i in range(5)
    ]


def test_messages_come_in_time_order_across_channels_and_chunks(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    rng = np.random.default_rng(3)
    times = rng.integers(0, 10_000, 3000)
    with dora_replay.open_writer(path, YAML, chunk_size_bytes=2000) as w:
        for i, t in enumerate(times.tolist()):
            w.write(f"n{i % 3}/o", pa.array([i]), log_time_ns=t, publish_time_ns=t, seq=i)
    with dora_replay.open(path) as rec:
        got = [m.log_time_ns for m in rec.iter_messages()]
        assert got == sorted(times.tolist())
        window = list(rec.iter_messages(channels=["n1/o"], start=2000, end=3000))
        assert all(2000 <= m.log_time_ns < 3000 and m.channel == "n1/o" for m in window)
        assert len(window) == sum(1 for i, t in enumerate(times) if i % 3 == 1 and 2000 <= t < 3000)
        assert sum(c.chunk_count for c in rec.channels.values()) > 3


def test_to_table(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    record(path, [("cam/image", pa.array([i, i]), {"i": i}) for i in range(4)])
    with dora_replay.open(path) as rec:
        table = rec.to_table("cam/image")
    assert table.column_names == [
        "log_time_ns",
        "publish_time_ns",
        "seq",
        "cause",
        "metadata",
        "data",
        "taken",
    ]
    assert table.column("data").to_pylist() == [[i, i] for i in range(4)]
    assert table.column("metadata").to_pylist() == [f'{{"i": {i}}}' for i in range(4)]


def test_type_change_mid_recording_makes_a_new_version(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    record(
        path,
        [
            ("n/o", pa.array([1]), None),
            ("n/o", pa.array(["a"]), None),
            ("n/o", pa.array([2]), None),
        ],
    )
    with dora_replay.open(path) as rec:
        assert rec.channels["n/o"].types == [pa.int64(), pa.string()]
        assert [m.data.to_pylist() for m in rec.iter_messages()] == [[1], ["a"], [2]]
        with pytest.raises(dora_replay.RecordingError, match="version="):
            rec.to_table("n/o")
        assert rec.to_table("n/o", version=2).column("data").to_pylist() == [["a"]]


def test_empty_recording(tmp_path: Path) -> None:
    path = tmp_path / "empty.dora"
    with dora_replay.open_writer(path, YAML):
        pass
    with dora_replay.open(path) as rec:
        assert rec.channels == {} and list(rec.iter_messages()) == [] and rec.clean
        assert rec.message_count == 0 and rec.problems == []


@pytest.mark.parametrize("compression", ["zstd", "zstd:5", "lz4", "none"])
def test_compression_codecs(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "c.dora"
    frames = [pa.array(np.full(300_000, i, np.uint8)) for i in range(8)]
    record(
        path,
        [("cam/image", f, None) for f in frames],
        compression=compression,
        chunk_size_bytes=1 << 20,
    )
    with dora_replay.open(path) as rec:
        assert [m.data.equals(f) for m, f in zip(rec.iter_messages(), frames, strict=True)] == [
            True
        ] * 8
        assert rec.header.compression.startswith(compression.split(":")[0])


def test_bad_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="zstd:LEVEL"):
        dora_replay.open_writer("/nonexistent/x.dora", YAML, compression="gzip")


def test_writer_stats_and_drops(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    with dora_replay.open_writer(path, YAML) as w:
        for i in range(10):
            w.write("a/b", pa.array([i]), log_time_ns=i, publish_time_ns=i, seq=i)
        w.add_drops("a/b", 3)
    s = w.stats
    assert (s.messages, s.channels, s.drops, s.pending) == (10, {"a/b": 10}, {"a/b": 3}, 0)
    assert s.bytes_written == path.stat().st_size and s.chunks == 1
    with dora_replay.open(path) as rec:
        assert rec.channels["a/b"].drops == 3
    with pytest.raises(dora_replay.RecordingError, match="closed"):
        w.write("a/b", pa.array([1]), log_time_ns=1, publish_time_ns=1, seq=1)


def test_low_rate_messages_are_in_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "live.dora"
    with dora_replay.open_writer(path, YAML, flush_interval_s=0.5) as w:
        w.write("imu/data", pa.array([1.0]), log_time_ns=1, publish_time_ns=1, seq=0)
        deadline = time.monotonic() + 0.5
        time.sleep(0.5)
        with dora_replay.open(path) as rec:  # a fresh reader, while the writer is open
            assert time.monotonic() >= deadline
            assert [m.seq for m in rec.iter_messages()] == [0]
            assert not rec.clean


def test_writer_falling_behind_counts_drops_instead_of_blocking(tmp_path: Path) -> None:
    path = tmp_path / "slow.dora"
    big = pa.array(np.zeros(1 << 20, np.uint8))
    with dora_replay.open_writer(path, YAML, max_buffer_bytes=4 << 20, compression="zstd:19") as w:
        t0 = time.monotonic()
        for i in range(200):
            w.write("cam/image", big, log_time_ns=i, publish_time_ns=i, seq=i)
        assert time.monotonic() - t0 < 2.0
    s = w.stats
    assert s.messages + s.drops.get("cam/image", 0) == 200
    with dora_replay.open(path) as rec:
        assert rec.channels["cam/image"].message_count == s.messages


def test_taken_inputs_round_trip_and_older_files_read_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``taken``: the last message the sender had taken on each input, so a replay can hand a
    node its inputs in the order it took them. Files from before it have six columns and read
    with ``taken`` None."""
    path = tmp_path / "run.dora"
    taken = {"lidar/scan": 41, "dora/timer/hz/10": 7}
    took = [("lidar/scan", 40), ("dora/timer/hz/10", 7), ("lidar/scan", 41)]
    with dora_replay.open_writer(path, YAML) as w:
        w.write(
            "ctl/cmd", pa.array([1.0]), log_time_ns=1, publish_time_ns=1, seq=0,
            taken=taken, took=took,
        )  # fmt: skip
        w.write("ctl/cmd", pa.array([2.0]), log_time_ns=2, publish_time_ns=2, seq=1)
        w.write("ctl/cmd", pa.array([3.0]), log_time_ns=3, publish_time_ns=3, seq=2, taken={})
    with dora_replay.open(path) as rec:
        got = [(m.taken, m.took) for m in rec.iter_messages()]
        assert got == [(taken, took), (None, None), ({}, None)]
        assert rec.to_table("ctl/cmd").column("taken").to_pylist() == [
            "dora/timer/hz/10#7 lidar/scan#41 | lidar/scan#40 dora/timer/hz/10#7 lidar/scan#41",
            None,
            "",
        ]
    import dora_replay._writer as writer_module
    from dora_replay._chunk import chunk_schema

    def six_columns(data_type: pa.DataType) -> pa.Schema:  # the layout before ``taken``
        return pa.schema(list(chunk_schema(data_type))[:6])

    monkeypatch.setattr(writer_module, "chunk_schema", six_columns)
    old = tmp_path / "old.dora"
    with dora_replay.open_writer(old, YAML) as w:
        w.write("ctl/cmd", pa.array([1.0]), log_time_ns=1, publish_time_ns=1, seq=0, taken=taken)
    with dora_replay.open(old) as rec:
        assert [(m.data.to_pylist(), m.taken) for m in rec.iter_messages()] == [([1.0], None)]
        assert "taken" not in rec.to_table("ctl/cmd").column_names
        assert rec.verify() == []
