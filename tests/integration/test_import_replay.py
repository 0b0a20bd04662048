"""A rosbag2 MCAP imported with `dora import` and replayed into a node of one's own, as
docs/cli.md describes: every message arrives, in order, at `--speed 0`."""

from __future__ import annotations

import json
from pathlib import Path

from _cli import run_dora
from _ros_bags import write_rosbag2_style

LISTENER = """
import json, os
from dora import Node

got = []
for event in Node():
    if event["type"] == "INPUT":
        got.append([event["id"], event["value"][0]["linear"]["x"].as_py()])
with open(os.environ["OUT"], "w") as f:
    json.dump(got, f)
"""

DATAFLOW = """
nodes:
  - id: robot          # the imported topics' node: replayed from the recording
    path: dynamic
    outputs: [imu, imu_2]
  - id: listener
    path: listener.py
    env: {{OUT: "{out}"}}
    inputs:
      imu: robot/imu
      other: robot/imu_2
"""


def test_an_imported_bag_replays_into_a_node(tmp_path: Path) -> None:
    bag = tmp_path / "bag.mcap"
    write_rosbag2_style(bag)
    r = run_dora("import", str(bag), "-o", str(tmp_path / "bag.dora"))
    assert r.returncode == 0, r.stderr
    assert "note: topic `robot/imu` imported as `robot/imu_2`" in r.stdout, r.stdout
    assert "note: seq numbered 0, 1, 2... in time order on robot/imu" in r.stdout, r.stdout
    (tmp_path / "listener.py").write_text(LISTENER)
    out = tmp_path / "got.json"
    (tmp_path / "consume.yml").write_text(DATAFLOW.format(out=out))
    r = run_dora(
        "replay", "bag.dora", "--dataflow", "consume.yml", "--speed", "0", "-q", cwd=tmp_path
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replayed nodes: robot; live nodes: listener" in r.stdout, r.stdout
    got = json.loads(out.read_text())
    assert [x for i, x in got if i == "imu"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [x for i, x in got if i == "other"] == [0.0, 1.0]


ONE_TOPIC = """
nodes:
  - id: robot
    path: dynamic
    outputs: [imu]
  - id: listener
    path: listener.py
    env: {{OUT: "{out}"}}
    inputs:
      imu: robot/imu
"""


def test_naming_the_topics_to_send_leaves_the_others_out(tmp_path: Path) -> None:
    """A dataflow that declares only the topics its nodes read: the other recorded topics fail
    the replay (no node produces them), and the note's way out, --channels naming what to
    send, used to be refused or to fail all the same."""
    bag = tmp_path / "bag.mcap"
    write_rosbag2_style(bag)
    assert run_dora("import", str(bag), "-o", str(tmp_path / "bag.dora")).returncode == 0
    (tmp_path / "listener.py").write_text(LISTENER)
    out = tmp_path / "got.json"
    (tmp_path / "mine.yml").write_text(ONE_TOPIC.format(out=out))
    replay = ("replay", "bag.dora", "--dataflow", "mine.yml", "--speed", "0", "--assert", "-q")
    r = run_dora(*replay, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "note: robot/imu_2: node `robot` has no output `imu_2`" in r.stdout, r.stdout
    assert "name the channels to send or compare with --channels" in r.stdout, r.stdout
    r = run_dora(*replay, "--channels", "robot/imu", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x for _, x in json.loads(out.read_text())] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
