"""MCAP and Parquet interop on real files: export, import (incl. rosbag2 CDR), round trips."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _ros_bags import TWIST, write_rosbag2_style
from mcap.reader import make_reader

import dora_replay
from dora_replay._export_mcap import export_mcap
from dora_replay._export_parquet import export_parquet
from dora_replay._import_mcap import channel_name, import_mcap
from dora_replay._jsonify import foxglove_readable

YAML = "nodes:\n  - id: cam\n    path: cam.py\n    outputs: [image]\n"


IMU = """std_msgs/Header header
geometry_msgs/Quaternion orientation
float64[9] orientation_covariance
geometry_msgs/Vector3 angular_velocity
float64[9] angular_velocity_covariance
geometry_msgs/Vector3 linear_acceleration
float64[9] linear_acceleration_covariance
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
================================================================================
MSG: geometry_msgs/Quaternion
float64 x
float64 y
float64 z
float64 w
================================================================================
MSG: geometry_msgs/Vector3
float64 x
float64 y
float64 z
"""

SENT = [
    ("cam/image", pa.array(np.arange(64, dtype=np.uint8)), {"encoding": "mono8", "width": 8}),
    ("imu/data", pa.array([0.1, -9.81, 0.0]), None),
    ("det/boxes", pa.array([{"x": 1.5, "label": "cup", "tags": ["a"]}]), {"flags": [1, 2]}),
    ("det/names", pa.array(["a", None, "c"]), None),
    ("raw/blob", pa.array([b"\x00\x01", None]), None),
    ("imu/data", pa.array([0.2, -9.8, float("nan")]), None),
    (
        "cam/image",
        pa.array(np.arange(64, dtype=np.uint8)[::-1].copy()),
        {"encoding": "mono8", "width": 8},
    ),
]


def record(path: Path) -> None:
    with dora_replay.open_writer(path, YAML, {"robot": "r2", "git": "abc123"}) as w:
        for i, (ch, data, meta) in enumerate(SENT):
            w.write(
                ch,
                data,
                log_time_ns=10**18 + i * 1000,
                publish_time_ns=10**18 + i * 900,
                seq=i,
                cause="in/1" if i else None,
                metadata=meta,
                taken={"in/1": i, "dora/timer/hz/10": 2 * i} if i else None,
                took=[("dora/timer/hz/10", 2 * i), ("in/1", i)] if i else None,
            )


def same(a: pa.Array, b: pa.Array) -> bool:
    return a.type == b.type and repr(a.to_pylist()) == repr(b.to_pylist())


def test_mcap_export_is_json_foxglove_can_show(tmp_path: Path) -> None:
    src, out = tmp_path / "run.dora", tmp_path / "run.mcap"
    record(src)
    assert export_mcap(src, out) == len(SENT)
    with out.open("rb") as f:
        reader = make_reader(f)
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert meta["dora"]["dataflow_yaml"] == YAML and meta["dora"]["meta.robot"] == "r2"
    with out.open("rb") as f:
        rows = list(make_reader(f).iter_messages())
    assert [c.topic for _, c, _ in rows] == [c for c, _, _ in SENT]
    for i, (schema, channel, message) in enumerate(rows):
        assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
        assert foxglove_readable(json.loads(schema.data)), schema.data
        doc = json.loads(message.data)
        # no cause: no key (Foxglove's schema reader takes one type per field, not "or null")
        extra = {"cause", "taken", "took"} if i else set()
        assert set(doc) == {"data", "seq", "metadata"} | extra
    first = json.loads(rows[0][2].data)
    assert isinstance(first["data"], str)  # uint8 image as base64
    boxes = json.loads(rows[2][2].data)
    assert boxes["data"] == {"x": 1.5, "label": "cup", "tags": ["a"]} and boxes["metadata"] == {
        "flags": [1, 2]
    }
    assert rows[1][2].log_time == 10**18 + 1000 and rows[1][2].publish_time == 10**18 + 900


def test_mcap_round_trip_restores_types_values_metadata_and_times(tmp_path: Path) -> None:
    src, mid, back = tmp_path / "run.dora", tmp_path / "run.mcap", tmp_path / "back.dora"
    record(src)
    export_mcap(src, mid)
    report = import_mcap(mid, back)
    assert report.messages == len(SENT) and report.raw == []
    with dora_replay.open(src) as a, dora_replay.open(back) as b:
        assert b.dataflow_yaml == YAML and b.metadata["git"] == "abc123"
        assert b.start_time_ns == a.start_time_ns  # not the time of the import
        for x, y in zip(a.iter_messages(), b.iter_messages(), strict=True):
            assert (x.channel, x.log_time_ns, x.publish_time_ns, x.seq, x.cause) == (
                y.channel,
                y.log_time_ns,
                y.publish_time_ns,
                y.seq,
                y.cause,
            )
            assert (x.metadata, x.taken, x.took) == (y.metadata, y.taken, y.took)
            assert same(x.data, y.data), (x.data, y.data)


def write_rosbag(path: Path) -> None:
    from mcap_ros2.writer import Writer

    with path.open("wb") as f:
        w = Writer(f)
        twist = w.register_msgdef("geometry_msgs/msg/Twist", TWIST)
        imu = w.register_msgdef("sensor_msgs/msg/Imu", IMU)
        for i in range(5):
            t = 1_700_000_000_000_000_000 + i * 10_000_000
            w.write_message(
                "/cmd_vel",
                twist,
                {
                    "linear": {"x": 0.5 * i, "y": 0.0, "z": 0.0},
                    "angular": {"x": 0.0, "y": 0.0, "z": 0.1},
                },
                log_time=t,
                publish_time=t,
                sequence=i,
            )
            w.write_message(
                "/robot/imu",
                imu,
                {
                    "header": {
                        "stamp": {"sec": 1_700_000_000, "nanosec": i},
                        "frame_id": "imu_link",
                    },
                    "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
                    "orientation_covariance": [0.0] * 9,
                    "angular_velocity": {"x": 0.01 * i, "y": 0.0, "z": 0.0},
                    "angular_velocity_covariance": [0.0] * 9,
                    "linear_acceleration": {"x": 0.0, "y": 0.0, "z": 9.81},
                    "linear_acceleration_covariance": [0.0] * 9,
                },
                log_time=t + 1,
                publish_time=t,
                sequence=i,
            )
        w.finish()


def test_rosbag2_cdr_import_maps_messages_to_one_row_structs(tmp_path: Path) -> None:
    bag, out = tmp_path / "bag.mcap", tmp_path / "bag.dora"
    write_rosbag(bag)
    report = import_mcap(bag, out)
    assert report.messages == 10 and report.channels == {"ros/cmd_vel": 5, "robot/imu": 5}
    with dora_replay.open(out) as rec:
        assert "id: robot" in rec.dataflow_yaml and "- imu" in rec.dataflow_yaml
        twists = list(rec.iter_messages(channels="ros/cmd_vel"))
        assert [m.data.to_pylist()[0]["linear"]["x"] for m in twists] == [0.0, 0.5, 1.0, 1.5, 2.0]
        assert all(isinstance(m.data, pa.StructArray) and len(m.data) == 1 for m in twists)
        imu = list(rec.iter_messages(channels="robot/imu"))[3].data.to_pylist()[0]
        assert imu["header"]["frame_id"] == "imu_link" and imu["header"]["stamp"]["nanosec"] == 3
        assert (
            imu["linear_acceleration"]["z"] == 9.81 and imu["orientation_covariance"] == [0.0] * 9
        )
        assert [m.seq for m in twists] == list(range(5))
        assert twists[1].log_time_ns == 1_700_000_000_010_000_000
        assert rec.start_time_ns == 1_700_000_000_000_000_000  # the first message's time
        assert rec.end_time_ns == 1_700_000_000_040_000_001  # the last one's, not the import's
        assert rec.channels["robot/imu"].types[0].get_field_index("header") == 0


def test_other_encodings_are_kept_as_raw_bytes(tmp_path: Path) -> None:
    from mcap.writer import Writer

    path, out = tmp_path / "pb.mcap", tmp_path / "pb.dora"
    with path.open("wb") as f:
        w = Writer(f)
        w.start()
        sid = w.register_schema("foo.Bar", "protobuf", b"\x00")
        cid = w.register_channel("/foo", "protobuf", sid)
        w.add_message(cid, log_time=5, data=b"\x08\x01", publish_time=4)
        w.finish()
    report = import_mcap(path, out)
    assert report.raw == ["ros/foo"]
    with dora_replay.open(out) as rec:
        [m] = list(rec.iter_messages())
    assert m.data.to_pylist() == [8, 1] and m.metadata == {
        "mcap.encoding": "protobuf",
        "mcap.schema": "foo.Bar",
    }


def test_channel_names_for_topics() -> None:
    assert channel_name("cam/image") == "cam/image"
    assert channel_name("/cmd_vel") == "ros/cmd_vel"
    assert channel_name("/a/b/c") == "a_b/c"
    assert channel_name("/") == "ros/unnamed"


def test_parquet_export_one_file_per_channel(tmp_path: Path) -> None:
    src, out = tmp_path / "run.dora", tmp_path / "pq"
    record(src)
    files = export_parquet(src, out)
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "cam/image.parquet",
        "det/boxes.parquet",
        "det/names.parquet",
        "imu/data.parquet",
        "raw/blob.parquet",
    ]
    table = pq.read_table(out / "cam" / "image.parquet")
    assert table.num_rows == 2 and table.column("data").to_pylist()[1] == list(range(63, -1, -1))
    assert json.loads(table.column("metadata")[0].as_py()) == {"encoding": "mono8", "width": 8}
    assert table.schema.metadata[b"dora.channel"] == b"cam/image"


def test_rosbag2_zero_sequences_and_colliding_topics(tmp_path: Path) -> None:
    """rosbag2 writes sequence 0 for every message: imported as is, a lockstep replay (which
    keys messages by channel and seq) sent one message per channel. And two topics mapping to
    one channel were merged without a word."""
    bag, out = tmp_path / "bag.mcap", tmp_path / "bag.dora"
    write_rosbag2_style(bag)
    report = import_mcap(bag, out)
    assert report.channels == {"robot/imu": 6, "robot/imu_2": 2}
    assert report.renamed == {"robot/imu": "robot/imu_2"}
    assert sorted(report.renumbered) == ["robot/imu", "robot/imu_2"]
    with dora_replay.open(out) as rec:
        first = list(rec.iter_messages(channels="robot/imu"))
        assert [m.seq for m in first] == list(range(6))
        assert [m.data.to_pylist()[0]["linear"]["x"] for m in first] == [float(i) for i in range(6)]
        assert [m.seq for m in rec.iter_messages(channels="robot/imu_2")] == [0, 1]
        assert rec.metadata["mcap.topic.robot/imu"] == "/robot/imu"
        assert rec.metadata["mcap.topic.robot/imu_2"] == "robot/imu"
        assert rec.metadata["mcap.schema.robot/imu"] == "geometry_msgs/msg/Twist"


def test_a_cut_off_mcap_imports_what_comes_before_the_cut(tmp_path: Path) -> None:
    """What a crashed `ros2 bag record` leaves: no summary, a last record cut in two. The
    import used to fail on the whole file."""
    from mcap_ros2.writer import Writer

    bag = tmp_path / "bag.mcap"
    with bag.open("wb") as f:
        w = Writer(f, chunk_size=256)  # many chunks, as a long recording has
        twist = w.register_msgdef("geometry_msgs/msg/Twist", TWIST)
        for i in range(40):
            msg = {
                "linear": {"x": float(i), "y": 0.0, "z": 0.0},
                "angular": {"x": 0, "y": 0, "z": 0},
            }
            w.write_message("/cmd_vel", twist, msg, log_time=i, publish_time=i, sequence=i)
        w.finish()
    raw = bag.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(raw[: len(raw) // 2])
    report = import_mcap(cut, tmp_path / "cut.dora")
    assert report.cut and 5 < report.messages < 40, report
    with dora_replay.open(tmp_path / "cut.dora") as rec:
        got = [m.data.to_pylist()[0]["linear"]["x"] for m in rec.iter_messages()]
    assert got == [float(i) for i in range(report.messages)]
    with dora_replay.open(tmp_path / "cut.dora") as rec:
        assert rec.start_time_ns == 0  # its first message's, found by the scan


def test_schemas_foxglove_cannot_read_are_recognised() -> None:
    """The rules of Foxglove's JSON Schema reader (``parseJsonSchema`` in its mcap-support
    package): it threw on each of the schemas below, so the channel showed nothing."""
    ok = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "number"}}}}
    assert foxglove_readable(ok)
    for field in (
        {"type": ["string", "null"]},  # one type name per field
        {"anyOf": [{"type": "object", "properties": {}}, {"type": "array"}]},
        {"type": "object"},  # an object without properties
        {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
        {"type": "null"},
        {},
    ):
        assert not foxglove_readable({"type": "object", "properties": {"f": field}}), field


ODD_TYPES = {
    "t/ns": pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns")),
    "t/utc": pa.array([1_700_000_000_123_456], pa.timestamp("us", tz="UTC")),
    "t/date": pa.array([20455], pa.date32()),
    "t/time": pa.array([3_723_000_000_000], pa.time64("ns")),
    "t/dur": pa.array([5], pa.duration("ms")),
    "t/dec": pa.array(["1.25", None], pa.string()).cast(pa.decimal128(5, 2)),
    "t/dict": pa.array(["a", "b", "a"]).dictionary_encode(),
    "t/map": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
    "t/stamped": pa.array(
        [{"stamp": 1_700_000_000_000_000_001, "xy": [1.0, 2.0]}],
        pa.struct([("stamp", pa.timestamp("ns")), ("xy", pa.list_(pa.float64()))]),
    ),
    "t/cloud": pa.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], pa.list_(pa.float32(), 3)),
}


def test_every_arrow_type_exports_to_mcap_and_comes_back(tmp_path: Path) -> None:
    """A timestamp[ns] channel failed the whole export ("not safely convertible to
    microseconds"); decimals and maps could not be imported back."""
    src, mid, back = tmp_path / "odd.dora", tmp_path / "odd.mcap", tmp_path / "back.dora"
    with dora_replay.open_writer(src, YAML) as w:
        for i, (ch, arr) in enumerate(ODD_TYPES.items()):
            w.write(ch, arr, log_time_ns=10**18 + i, publish_time_ns=10**18 + i, seq=0)
    notes: list[str] = []
    assert export_mcap(src, mid, warn=notes.append) == len(ODD_TYPES)
    assert notes == [  # lists of lists: a map's entries, a point cloud's points
        f"note: channel `{ch}` ({ODD_TYPES[ch].type}) is exported without a JSON Schema: "
        "Foxglove's JSON Schema reader cannot describe lists of lists or null values; "
        "Foxglove shows its messages as plain JSON"
        for ch in ("t/map", "t/cloud")
    ]
    with mid.open("rb") as f:
        rows = {c.topic: (s, json.loads(m.data)) for s, c, m in make_reader(f).iter_messages()}
    assert rows["t/ns"][1]["data"] == [1_700_000_000_123_456_789, None]  # integer ns, exact
    assert rows["t/stamped"][1]["data"] == {"stamp": 1_700_000_000_000_000_001, "xy": [1.0, 2.0]}
    assert rows["t/map"][1]["data"] == [[{"key": "k", "value": 1}], None]
    for topic, (schema, _) in rows.items():
        if topic in ("t/map", "t/cloud"):
            assert schema is None
        else:
            assert foxglove_readable(json.loads(schema.data)), topic
    import_mcap(mid, back)
    with dora_replay.open(back) as rec:
        got = {m.channel: m.data for m in rec.iter_messages()}
    for ch, arr in ODD_TYPES.items():
        assert got[ch].type == arr.type and got[ch].equals(arr), (ch, got[ch])


def test_struct_channels_with_one_row_and_several_get_a_schema_each(tmp_path: Path) -> None:
    """A struct channel was described as "an object or a list of objects" (``anyOf``), which
    Foxglove's reader refuses; each form now has its own MCAP channel on the same topic."""
    src, mid, back = tmp_path / "s.dora", tmp_path / "s.mcap", tmp_path / "back.dora"
    pose = [{"x": 1.0, "y": 2.0}]
    with dora_replay.open_writer(src, YAML) as w:
        w.write("det/boxes", pa.array(pose), log_time_ns=1, publish_time_ns=1, seq=0)
        w.write("det/boxes", pa.array(pose * 2), log_time_ns=2, publish_time_ns=2, seq=1)
    export_mcap(src, mid)
    with mid.open("rb") as f:
        rows = [(s, c, json.loads(m.data)) for s, c, m in make_reader(f).iter_messages()]
    assert [c.topic for _, c, _ in rows] == ["det/boxes", "det/boxes"]
    assert rows[0][1].id != rows[1][1].id
    assert json.loads(rows[0][0].data)["properties"]["data"]["type"] == "object"
    assert json.loads(rows[1][0].data)["properties"]["data"]["type"] == "array"
    assert rows[0][2]["data"] == pose[0] and rows[1][2]["data"] == pose * 2
    import_mcap(mid, back)
    with dora_replay.open(back) as rec:
        assert [m.data.to_pylist() for m in rec.iter_messages()] == [pose, pose * 2]


def test_a_value_arrow_cannot_hold_names_the_message_and_topic(tmp_path: Path) -> None:
    """A ROS uint64 of 2**64 - 1 failed the import with 'is it a valid MCAP file?'."""
    from mcap_ros2.writer import Writer

    bag = tmp_path / "u64.mcap"
    with bag.open("wb") as f:
        w = Writer(f)
        schema = w.register_msgdef("std_msgs/msg/UInt64", "uint64 data")
        w.write_message("/big", schema, {"data": 5}, log_time=1, publish_time=1, sequence=1)
        w.write_message("/big", schema, {"data": 2**64 - 1}, log_time=2, publish_time=2, sequence=2)
        w.finish()
    with pytest.raises(ValueError, match=r"message 2 \(topic `/big`\) has a value Arrow cannot"):
        import_mcap(bag, tmp_path / "u64.dora")
    assert not (tmp_path / "u64.dora").exists()


def test_camera_frames_export_as_images_foxglove_shows(tmp_path: Path) -> None:
    """A camera's frames (bytes with width, height and encoding in their metadata) are
    Foxglove ``RawImage`` messages, which its Image panel shows; they import back as sent."""
    src, mid, back = tmp_path / "cam.dora", tmp_path / "cam.mcap", tmp_path / "back.dora"
    frame = np.arange(4 * 3 * 3, dtype=np.uint8)
    sent = [
        ({"width": 4, "height": 3, "encoding": "rgb8", "frame": 0}, frame),
        ({"width": 4, "height": 3, "encoding": "rgb8", "frame": 1}, frame[:-1]),  # not 3 rows
        ({"width": 4, "height": 3, "encoding": "mjpeg"}, frame),  # nothing Foxglove decodes
    ]
    with dora_replay.open_writer(src, YAML) as w:
        for i, (meta, data) in enumerate(sent):
            t = 1_700_000_000_250_000_000 + i
            w.write(
                "cam/image", pa.array(data), log_time_ns=t, publish_time_ns=t, seq=i, metadata=meta
            )
    export_mcap(src, mid)
    with mid.open("rb") as f:
        rows = [(s, json.loads(m.data)) for s, _, m in make_reader(f).iter_messages()]
    assert [s.name for s, _ in rows] == ["foxglove.RawImage", "dora/uint8", "dora/uint8"]
    image = rows[0][1]
    assert {k: image[k] for k in ("width", "height", "encoding", "step", "frame_id")} == {
        "width": 4,
        "height": 3,
        "encoding": "rgb8",
        "step": 12,
        "frame_id": "",
    }
    assert image["timestamp"] == {"sec": 1_700_000_000, "nsec": 250_000_000}
    assert np.frombuffer(base64.b64decode(image["data"]), np.uint8).tolist() == frame.tolist()
    assert foxglove_readable(json.loads(rows[0][0].data))
    import_mcap(mid, back)
    with dora_replay.open(back) as rec:
        got = [(m.metadata, m.data.to_numpy().tolist()) for m in rec.iter_messages()]
    assert got == [(meta, data.tolist()) for meta, data in sent]
