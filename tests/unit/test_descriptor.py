"""Parsing and validation of dataflow files (dora-rs 1.x compatible YAML)."""

from __future__ import annotations

import re
import stat
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dora_runtime._timer import TIMER_FORMS as FORMS
from dora_runtime._timer import parse_duration_s, parse_timer
from dora_runtime.descriptor import Descriptor, load_descriptor
from dora_runtime.errors import DescriptorError

Problems = list[tuple[int | None, str]]


@pytest.fixture(autouse=True)
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only a fake ``dora-echo`` executable, so `which` is deterministic."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "dora-echo"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    return exe


def write(tmp_path: Path, text: str, name: str = "dataflow.yml") -> Path:
    """Write ``text`` (dedented, leading newline dropped, so line 1 is its first line)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Descriptor:
    return load_descriptor(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> Problems:
    with pytest.raises(DescriptorError) as info:
        load(tmp_path, text)
    return info.value.problems


def one_problem(tmp_path: Path, text: str) -> tuple[int | None, str]:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


def touch(tmp_path: Path, *names: str) -> None:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")


# -- valid files -----------------------------------------------------------------------------

ROBOT = """
env:
  LOG_LEVEL: info
deploy:
  machine: robot
nodes:
  - id: camera
    path: nodes/camera.py
    args: --fps 30 --name "front cam"
    env:
      WIDTH: 640
      MIRROR: false
      GAIN: 1.5
    inputs:
      tick: dora/timer/millis/33
    outputs:
      - image
  - id: imu
    path: dora-echo
    inputs:
      tick: dora/timer/hz/200
    outputs: [accel]
  - id: detector
    path: nodes/detector.py
    inputs:
      image:
        source: camera/image
        queue_size: 1
        queue_policy: drop_oldest
    outputs: [boxes]
    deploy:
      machine: gpu-box
      labels: {gpu: true}
    restart_policy: on-failure
    max_restarts: 3
    restart_delay: 500ms
    max_restart_delay: 10
    restart_window: 1m
    health_check_timeout: 2.5
    input_timeout: 2s
  - id: planner
    path: nodes/planner.py
    args: [--horizon, 10]
    inputs:
      boxes: {source: detector/boxes, queue_policy: backpressure, queue_size: 4}
      accel: imu/accel
      feedback: controller/state
    outputs: [plan]
  - id: controller
    path: dynamic
    inputs:
      plan: planner/plan
      tick: dora/timer/secs/1
    outputs: [state]
"""


def test_realistic_file_parses(tmp_path: Path, fake_path: Path) -> None:
    touch(tmp_path, "nodes/camera.py", "nodes/detector.py", "nodes/planner.py")
    d = load(tmp_path, ROBOT)
    assert [n.id for n in d.nodes] == ["camera", "imu", "detector", "planner", "controller"]
    camera, imu, detector, planner, controller = d.nodes
    assert camera.resolved_path == str(tmp_path / "nodes/camera.py")
    assert camera.args == ["--fps", "30", "--name", "front cam"]
    assert camera.env == {"LOG_LEVEL": "info", "WIDTH": "640", "MIRROR": "false", "GAIN": "1.5"}
    assert camera.inputs["tick"].timer_interval_ns == 33_000_000
    assert camera.inputs["tick"].line == 14
    assert camera.deploy.machine == "robot"
    assert camera.line == 6
    assert imu.resolved_path == str(fake_path)
    assert imu.inputs["tick"].timer_interval_ns == 5_000_000
    image = detector.inputs["image"]
    assert (image.source, image.queue_size, image.queue_policy) == (
        "camera/image",
        1,
        "drop_oldest",
    )
    assert detector.deploy.machine == "gpu-box"
    assert detector.deploy.labels == {"gpu": "true"}
    assert detector.restart_policy == "on-failure"
    assert detector.max_restarts == 3
    assert detector.restart_delay_s == 0.5
    assert detector.max_restart_delay_s == 10.0
    assert detector.restart_window_s == 60.0
    assert detector.health_check_timeout_s == 2.5
    assert detector.input_timeout_s == 2.0
    assert planner.args == ["--horizon", "10"]
    boxes = planner.inputs["boxes"]
    assert (boxes.queue_size, boxes.queue_policy) == (4, "backpressure")
    assert planner.inputs["accel"].queue_size == 10  # default
    assert controller.is_dynamic and controller.resolved_path is None
    assert controller.inputs["tick"].timer_interval_ns == 1_000_000_000
    # feedback loop planner -> controller -> planner is legal
    assert [n.id for n, _ in d.subscribers("controller", "state")] == ["planner"]
    assert d.text == (tmp_path / "dataflow.yml").read_text()
    assert d.raw["nodes"][0]["env"]["MIRROR"] is False
    assert detector.raw["inputs"]["image"]["queue_size"] == 1
    assert camera.restart_policy == "never" and camera.max_restarts == 0


def test_dora_rs_example_style_file(tmp_path: Path) -> None:
    touch(tmp_path, "webcam.py", "plot.py")
    d = load(
        tmp_path,
        """
        nodes:
          - id: webcam
            build: pip install -e ../node-hub/opencv-video-capture
            path: webcam.py
            inputs:
              tick: dora/timer/millis/50
            outputs:
              - image
            env:
              CAPTURE_PATH: 0
              IMAGE_WIDTH: 640
          - id: plot
            path: plot.py
            send_stdout_as: logs
            min_log_level: info
            inputs:
              image:
                source: webcam/image
                queue_size: 1
        """,
    )
    assert d.node("webcam").build == "pip install -e ../node-hub/opencv-video-capture"
    assert d.node("webcam").env == {"CAPTURE_PATH": "0", "IMAGE_WIDTH": "640"}
    assert d.node("plot").inputs["image"].queue_size == 1


def test_relative_paths_resolve_against_base_dir_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path, "flow/node.py", "flow/tool")
    (tmp_path / "flow/tool").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    d = load_descriptor(
        write(tmp_path / "flow", "nodes:\n  - {id: a, path: node.py}\n  - {id: b, path: tool}\n")
    )
    assert d.node("a").resolved_path == str(tmp_path / "flow/node.py")
    assert d.node("b").resolved_path == str(tmp_path / "flow/tool")  # bare name found in base dir


def test_build_makes_missing_path_legal(tmp_path: Path) -> None:
    d = load(
        tmp_path,
        """
        nodes:
          - {id: a, path: build/out.py, build: make}
          - {id: b, path: not-installed-yet, build: pip install thing}
        """,
    )
    assert d.node("a").resolved_path == str(tmp_path / "build/out.py")
    assert d.node("b").resolved_path is None


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    d = load(
        tmp_path,
        """
        nodes:
          - &base
            id: a
            path: dora-echo
            outputs: [x]
          - <<: *base
            id: b
            inputs: {x: a/x}
        """,
    )
    assert d.node("b").outputs == ["x"]


def test_empty_node_list_is_valid(tmp_path: Path) -> None:
    assert load(tmp_path, "nodes: []\n").nodes == []


def test_empty_values_mean_empty_as_in_dora_rs(tmp_path: Path) -> None:
    text = (
        "nodes:\n  - id: a\n    path: dora-echo\n    inputs:\n    outputs:\n    env:\n    args:\n"
    )
    node = load(tmp_path, text).node("a")
    assert (node.inputs, node.outputs, node.env, node.args) == ({}, [], {}, [])


# -- file-level errors -----------------------------------------------------------------------


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    line, msg = one_problem(tmp_path, "nodes:\n  - id: a\n    path: [unclosed\n  - id: b\n")
    assert line == 4
    assert msg.startswith("invalid YAML")


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert one_problem(tmp_path, text) == (None, "file is empty; expected a mapping with `nodes:`")


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    line, msg = one_problem(tmp_path, "- id: a\n")
    assert line == 1 and "top level" in msg and "must be a mapping, got a list" in msg


def test_nodes_missing_or_not_a_list(tmp_path: Path) -> None:
    line, msg = one_problem(tmp_path, "debug: true\n")
    assert line == 1 and "missing `nodes:`" in msg
    line, msg = one_problem(tmp_path, "debug: true\nnodes:\n  id: a\n")
    assert line == 3 and "`nodes` must be a list" in msg and "a mapping" in msg


def test_unknown_keys_suggest_the_closest(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodse: []
        nodes:
          - id: camera
            path: dora-echo
            ouputs: [image]
            zzzzzz: 1
          - id: b
            path: dora-echo
            inputs:
              x: {source: dora/timer/millis/5, queue_sise: 3}
        """,
    )
    assert found == [
        (1, "unknown key 'nodse' at top level; did you mean 'nodes'?"),
        (5, "unknown key 'ouputs' in node 'camera'; did you mean 'outputs'?"),
        (6, "unknown key 'zzzzzz' in node 'camera'; see docs/dataflow.md for valid keys"),
        (10, "unknown key 'queue_sise' in input `x` of node `b`; did you mean 'queue_size'?"),
    ]


def test_duplicate_yaml_keys(tmp_path: Path) -> None:
    line, msg = one_problem(tmp_path, "nodes:\n  - id: a\n    path: dora-echo\n    id: b\n")
    assert line == 4 and "duplicate key 'id' (first on line 2)" in msg


def test_dora_rs_keys_we_ignore_are_accepted(tmp_path: Path) -> None:
    load(
        tmp_path,
        """
        strict_types: true
        health_check_interval: 2
        nodes:
          - id: a
            path: dora-echo
            git: https://example.com/x.git
            rev: abc
            send_logs_as: log
            startup_timeout: 5
        """,
    )


def test_cpu_affinity(tmp_path: Path) -> None:
    text = "nodes:\n  - id: a\n    path: dora-echo\n    cpu_affinity: {}\n"
    assert load(tmp_path, text.format("[1, 0, 1]")).nodes[0].cpu_affinity == (1, 0)
    assert load(tmp_path, text.format("[]")).nodes[0].cpu_affinity == ()
    assert load(tmp_path, "nodes:\n  - id: a\n    path: dora-echo\n").nodes[0].cpu_affinity is None
    for bad in ("3", "[-1]", "[true]", "['0']", "{a: 1}"):
        line, msg = one_problem(tmp_path, text.format(bad))
        assert line == 4
        assert msg.startswith(
            "node 'a': cpu_affinity must be a list of CPU core numbers (integers >= 0), "
            "such as [0, 1]; got "
        ), msg


# -- node errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["operator", "operators"])
def test_operators_are_refused_clearly(tmp_path: Path, key: str) -> None:
    line, msg = one_problem(tmp_path, f"nodes:\n  - id: op\n    {key}:\n      python: op.py\n")
    assert line == 3
    assert msg == (
        f"node 'op': operators are not supported by dora-py (found `{key}:`); "
        "turn the operator into a node with `path:`"
    )


def test_legacy_custom_node_form_is_refused_with_the_way_out(tmp_path: Path) -> None:
    line, msg = one_problem(tmp_path, "nodes:\n  - id: c\n    custom:\n      source: c.py\n")
    assert line == 3
    assert msg == (
        "node 'c': the legacy `custom:` node form is not supported by dora-py; move its "
        "`source` to `path:` (and its `args`, `inputs`, `outputs` up a level)"
    )


def test_node_ids(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodes:
          - path: dora-echo
          - id: 42
            path: dora-echo
          - id: a
            path: dora-echo
          - id: a
            path: dora-echo
          - id: cam/front
            path: dora-echo
        """,
    )
    assert found[0] == (2, "node #1 has no `id`; add `id: <unique name>`")
    assert found[1][0] == 3 and "`id` must be a non-empty string, got 42 (int)" in found[1][1]
    assert found[2] == (7, "duplicate node id 'a' on lines 5 and 7; rename one of them")
    assert found[3][0] == 9 and "node id 'cam/front' contains '/'" in found[3][1]
    assert len(found) == 4


def test_path_errors(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    found = problems(
        tmp_path,
        """
        nodes:
          - id: nopath
          - id: missing
            path: missing.py
          - id: nested
            path: sub/tool
          - id: bare
            path: foo
          - id: dir
            path: adir
          - id: num
            path: 3
        """,
    )
    assert found[0] == (
        2,
        "node 'nopath' has no `path`; add `path:` (a .py file, an executable on PATH, or `dynamic`)",
    )
    assert (
        found[1][0] == 4 and f"does not exist (looked for {tmp_path / 'missing.py'})" in found[1][1]
    )
    assert found[2][0] == 6 and "path 'sub/tool' does not exist" in found[2][1]
    assert found[3] == (
        8,
        f"node 'bare': path 'foo' is neither a file (looked in {tmp_path}) nor an executable "
        "on PATH; install it or fix the path",
    )
    assert found[4][0] == 10 and "is a directory" in found[4][1]
    assert found[5][0] == 12 and "`path` must be a string, got 3 (int)" in found[5][1]


def test_args_and_env_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodes:
          - id: a
            path: dora-echo
            args: "--name 'unclosed"
          - id: b
            path: dora-echo
            args: {x: 1}
            env:
              OK: yes
              BAD: [1, 2]
              NONE:
        """,
    )
    assert [line for line, _ in found] == [4, 7, 10, 11]
    assert "cannot split args" in found[0][1]
    assert "`args` must be a string" in found[1][1]
    assert "env variable 'BAD' of node 'b' must be a string, number or boolean" in found[2][1]
    assert "got nothing (null)" in found[3][1]


def test_outputs_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodes:
          - id: a
            path: dora-echo
            outputs: [x, y, x]
          - id: b
            path: dora-echo
            outputs: x
        """,
    )
    assert found[0] == (4, "node 'a': output 'x' is declared twice; remove one")
    assert found[1][0] == 7 and "`outputs` must be a list of names, got 'x'" in found[1][1]


def test_restart_and_duration_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodes:
          - id: a
            path: dora-echo
            restart_policy: on_failure
            max_restarts: -1
            restart_delay: soon
            health_check_timeout: 0
            input_timeout: true
        """,
    )
    assert [line for line, _ in found] == [4, 5, 6, 7, 8]
    assert found[0][1].endswith("did you mean 'on-failure'?")
    assert "max_restarts must be an integer >= 0, got -1" in found[1][1]
    assert "`restart_delay` 'soon' is invalid" in found[2][1]
    assert "`health_check_timeout` must be > 0" in found[3][1]
    assert "`input_timeout` True (bool) is invalid" in found[4][1]


def test_deploy(tmp_path: Path) -> None:
    d = load(
        tmp_path,
        """
        _unstable_deploy: {machine: base, labels: {zone: a}}
        nodes:
          - id: a
            path: dora-echo
            _unstable_deploy: {labels: {gpu: true}}
          - id: b
            path: dora-echo
        """,
    )
    assert d.node("a").deploy.machine == "base"
    assert d.node("a").deploy.labels == {"zone": "a", "gpu": "true"}
    assert d.node("b").deploy.labels == {"zone": "a"}
    line, msg = one_problem(
        tmp_path, "nodes:\n  - id: a\n    path: dora-echo\n    deploy: {machien: x}\n"
    )
    assert line == 4 and msg.endswith("did you mean 'machine'?")


# -- inputs ----------------------------------------------------------------------------------


def test_input_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodes:
          - id: camera
            path: dora-echo
            outputs: [image]
          - id: detector
            path: dora-echo
            outputs: [boxes]
          - id: planner
            path: dora-echo
            inputs:
              bbox: detector/bbox
              img: camra/image
              bare: camera
              q0: {source: camera/image, queue_size: 0}
              qs: {source: camera/image, queue_size: "3"}
              pol: {source: camera/image, queue_policy: drop_newest}
              nosrc: {queue_size: 3}
              num: 5
              none: dora/none
        """,
    )
    assert found == [
        (
            11,
            "input `detector/bbox` of node `planner` names unknown output `bbox`; "
            "node `detector` declares: boxes",
        ),
        (
            12,
            "input `camra/image` of node `planner` names unknown node `camra`; "
            "existing nodes: camera, planner, detector",
        ),
        (
            13,
            "input `bare` of node `planner`: source 'camera' is not `<node>/<output>`; write e.g. "
            f"`camera/image` or a timer ({FORMS})",
        ),
        (14, "input `q0` of node `planner`: queue_size must be an integer >= 1, got 0 (int)"),
        (15, "input `qs` of node `planner`: queue_size must be an integer >= 1, got '3'"),
        (
            16,
            "input `pol` of node `planner`: queue_policy 'drop_newest' is not one of "
            "drop_oldest, backpressure",
        ),
        (17, "input `nosrc` of node `planner` has no `source`; add `source: <node>/<output>`"),
        (
            18,
            "input `num` of node `planner`: source must be `<node>/<output>` or a timer, "
            "got 5 (int)",
        ),
        (
            19,
            "input `none` of node `planner`: built-in source `dora/none` is not supported by "
            f"dora-py; its built-in sources are timers ({FORMS})",
        ),
    ]


def test_output_check_skipped_when_outputs_key_is_misspelt(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "nodes:\n  - {id: a, path: dora-echo, ouputs: [x]}\n  - {id: b, path: dora-echo, "
        "inputs: {x: a/x}}\n",
    )
    assert found == [(2, "unknown key 'ouputs' in node 'a'; did you mean 'outputs'?")]


def test_queue_policy_dash_spelling_normalised(tmp_path: Path) -> None:
    d = load(
        tmp_path,
        "nodes:\n  - id: a\n    path: dora-echo\n    inputs:\n"
        "      t: {source: dora/timer/hz/1, queue_policy: drop-oldest, input_timeout: 1.5}\n",
    )
    assert d.node("a").inputs["t"].queue_policy == "drop_oldest"


def test_self_loop_and_cycles_are_allowed(tmp_path: Path) -> None:
    d = load(
        tmp_path,
        """
        nodes:
          - {id: a, path: dora-echo, inputs: {x: b/y, me: a/x}, outputs: [x]}
          - {id: b, path: dora-echo, inputs: {x: a/x}, outputs: [y]}
        """,
    )
    assert len(d.nodes) == 2


def test_every_problem_is_reported_at_once_sorted_by_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        nodes:
          - id: a
            path: missing.py
            inputs:
              t: dora/timer/millis/0
              x: ghost/out
          - id: a
            path: dora-echo
            outputs: [o, o]
            restart_policy: sometimes
        colour: blue
        """,
    )
    lines = [line for line, _ in found]
    assert lines == [3, 5, 6, 7, 9, 10, 11]
    err = DescriptorError("f.yml", found)
    assert str(err).splitlines()[0].startswith("f.yml:3: node 'a': path 'missing.py'")


# -- timers and durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "ns"),
    [
        ("dora/timer/millis/100", 100_000_000),
        ("dora/timer/millis/1", 1_000_000),
        ("dora/timer/secs/2", 2_000_000_000),
        ("dora/timer/secs/0.5", 500_000_000),
        ("dora/timer/hz/10", 100_000_000),
        ("dora/timer/hz/2.5", 400_000_000),
        ("dora/timer/hz/3", 333_333_333),
        ("dora/timer/micros/500", 500_000),
        ("dora/timer/nanos/1000000", 1_000_000),
    ],
)
def test_timer_periods(source: str, ns: int) -> None:
    assert parse_timer(source) == ns


@pytest.mark.parametrize(
    "source",
    [
        "dora/timer/minutes/1",
        "dora/timer/millis/abc",
        "dora/timer/millis/0",
        "dora/timer/millis/1.5",
        "dora/timer/millis/-1",
        "dora/timer/hz/0",
        "dora/timer/secs/0.0",
        "dora/timer/hz/nan",
        "dora/timer/millis",
        "dora/timer/millis/5/x",
        "dora/timer/millis/",
        "dora/timer/micros/0",
        "dora/timer/nanos/1.5",
    ],
)
def test_malformed_timers(source: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_timer(source)
    assert str(info.value) == f"malformed timer `{source}`: expected {FORMS}"


def test_timer_forms_name_every_unit() -> None:
    assert FORMS == (
        "dora/timer/millis/<N>, dora/timer/secs/<N>, dora/timer/micros/<N>, "
        "dora/timer/nanos/<N> or dora/timer/hz/<N> with N > 0"
    )


def test_malformed_timer_in_file_has_line(tmp_path: Path) -> None:
    line, msg = one_problem(
        tmp_path,
        "nodes:\n  - id: a\n    path: dora-echo\n    inputs:\n      t: dora/timer/millis/0\n",
    )
    assert line == 5 and "malformed timer `dora/timer/millis/0`" in msg


@given(st.integers(min_value=1, max_value=10**9))
def test_millis_timer_round_trip(n: int) -> None:
    assert parse_timer(f"dora/timer/millis/{n}") == n * 1_000_000


@given(st.integers(min_value=1, max_value=1_000_000))
def test_hz_timer_is_inverse_of_period(hz: int) -> None:
    period = parse_timer(f"dora/timer/hz/{hz}")
    assert abs(period * hz - 1_000_000_000) <= hz


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(2, 2.0), (1.5, 1.5), ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1.5h", 5400.0)]
    + [("250us", 0.00025), ("3", 3.0), (" 10 ms ", 0.01), (0, 0.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration_s(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [True, None, -1, "5 parsecs", "ms", "-2s", float("inf"), [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(value)


def test_missing_file_is_a_descriptor_error(tmp_path: Path) -> None:
    with pytest.raises(DescriptorError) as info:
        load_descriptor(tmp_path / "nope.yml")
    assert info.value.problems == [(None, "file not found; check the path")]


def test_documented_example_is_valid(tmp_path: Path) -> None:
    doc = Path(__file__).parents[2] / "docs" / "dataflow.md"
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    full = [b for b in blocks if b.startswith("nodes:")]
    assert full, "docs/dataflow.md lost its full example"
    for block in full:
        touch(tmp_path, *re.findall(r"path: (\S+\.py)", block))
        d = load(tmp_path, block)
        assert d.node("planner").inputs["state"].source == "controller/state"


def test_non_executable_file_path_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "tool")
    with pytest.raises(DescriptorError) as e:
        load_descriptor(write(tmp_path, "nodes:\n  - {id: b, path: ./tool}\n"))
    assert "not executable" in str(e.value) and "chmod +x" in str(e.value)


def test_x_keys_hold_yaml_anchors(tmp_path: Path) -> None:
    touch(tmp_path, "a.py")
    d = load_descriptor(
        write(
            tmp_path,
            "x-defaults: &defaults\n  env: {LOG: debug}\n"
            "nodes:\n  - <<: *defaults\n    id: a\n    path: a.py\n",
        )
    )
    assert d.node("a").env == {"LOG": "debug"}
