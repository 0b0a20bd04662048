"""The plugin's pure parts, without pytester: settings, path expansion, live-node rule, plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from pytest_dora import _config, _paths, _report


def test_plugin_import_stays_light() -> None:
    code = (
        "import sys, pytest_dora.plugin\n"
        "heavy = [m for m in ('pyarrow', 'numpy', 'dora_replay') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parse_defaults(tmp_path: Path) -> None:
    cfg = _config.parse({}, tmp_path)
    assert cfg.speed == 0.0
    assert cfg.golden_dir == tmp_path.resolve() / "golden"
    assert cfg.tolerances_for_replay() is None


def test_parse_full_table(tmp_path: Path) -> None:
    cfg = _config.parse(
        {
            "speed": 2,
            "golden_dir": "data/golden",
            "dataflow": "robot/dataflow.yml",
            "record_duration": "2s",
            "ignore_metadata": ["timestamp"],
            "tolerances": {"planner/target": {"atol": 1e-6}, "*": {"rtol": 0.1}},
            "replace": {"detector": "new_detector.py"},
        },
        tmp_path,
    )
    assert cfg.speed == 2.0
    assert cfg.dataflow == tmp_path.resolve() / "robot/dataflow.yml"
    assert cfg.replace == {"detector": str(tmp_path.resolve() / "new_detector.py")}
    assert cfg.tolerances_for_replay() == {
        "planner/target": {"atol": 1e-6, "ignore_metadata": ["timestamp"]},
        "default": {"rtol": 0.1, "ignore_metadata": ["timestamp"]},
    }


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"sped": 0}, "unknown key `sped`; did you mean `speed`?"),
        ({"speed": "fast"}, "speed = 'fast': expected a number"),
        ({"speed": -1}, "must be >= 0"),
        ({"tolerances": {"a/b": {"atoll": 1}}}, "unknown key `atoll`; did you mean `atol`?"),
        ({"tolerances": {"a/b": 1}}, "expected a table"),
        ({"ignore_metadata": "timestamp"}, "expected a list of strings"),
    ],
)
def test_parse_errors_name_key_and_fix(tmp_path: Path, table: dict, expected: str) -> None:
    with pytest.raises(pytest.UsageError, match="tool.pytest_dora") as e:
        _config.parse(table, tmp_path)
    assert expected in str(e.value)


def test_expand_files_folders_globs(tmp_path: Path) -> None:
    (tmp_path / "g" / "sub").mkdir(parents=True)
    for name in ("a.dora", "sub/b.dora", "big_001.dora", "big_002.dora", "notes.txt"):
        (tmp_path / "g" / name).write_bytes(b"")
    sel = _paths.expand(["g/"], tmp_path)
    names = [p.relative_to(tmp_path / "g").as_posix() for p in sel.recordings]
    assert names == ["a.dora", "big_001.dora", "sub/b.dora"]  # part 2 is read with part 1
    sel = _paths.expand(["g/*.dora", "g/a.dora", "g/missing.dora", "g/none*.dora"], tmp_path)
    assert [p.name for p in sel.recordings] == ["a.dora", "big_001.dora"]
    assert sel.missing == [(tmp_path / "g" / "missing.dora").resolve()]
    assert sel.empty == ["g/none*.dora"]


_RULE_YAML = """
nodes:
  - {id: cam, path: cam.py, inputs: {tick: dora/timer/millis/10}, outputs: [image]}
  - {id: det, path: det.py, inputs: {image: {source: cam/image, queue_size: 1}}, outputs: [b]}
  - {id: gen, path: gen.py, outputs: [x]}
  - {id: ui, path: dynamic, outputs: [y]}
"""


def _recording(path: Path, yaml_text: str, channels: list[str], meta: dict | None = None) -> Path:
    """A small recording written directly: one message on each of ``channels``."""
    import dora_replay

    with dora_replay.open_writer(path, yaml_text, meta) as w:
        for i, ch in enumerate(channels):
            w.write(ch, pa.array([1.0]), log_time_ns=i + 1, publish_time_ns=i + 1, seq=0)
    return path


def test_compared_channels_is_the_replay_rule(tmp_path: Path) -> None:
    import dora_replay

    rec = _recording(tmp_path / "r.dora", _RULE_YAML, ["cam/image", "det/b", "gen/x", "ui/y"])
    # a dynamic node (`ui`) cannot run here: with recorded outputs it is replayed, as a sensor
    assert dora_replay.compared_channels(rec) == ["det/b"]
    assert dora_replay.compared_channels(rec, replace={"cam": "cam2.py"}) == ["cam/image", "det/b"]
    assert dora_replay.compared_channels(rec, live_nodes=["gen"]) == ["det/b", "gen/x"]
    assert dora_replay.compared_channels(rec, live_nodes=["ui"]) == ["det/b", "ui/y"]
    assert dora_replay.compared_channels(rec, replay_nodes=["det"]) == []
    with pytest.raises(dora_replay.ReplayError, match="unknown node"):
        dora_replay.compared_channels(rec, replace={"nosuch": "x.py"})


def test_find_dataflow_by_path_tails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dora_replay

    (tmp_path / "clone" / "examples" / "robot").mkdir(parents=True)
    (tmp_path / "clone" / "golden").mkdir()
    df = tmp_path / "clone" / "examples" / "robot" / "dataflow.yml"
    df.write_text(_RULE_YAML)
    moved = {"dataflow_path": "/elsewhere/checkout/examples/robot/dataflow.yml"}
    rec = _recording(tmp_path / "clone" / "golden" / "r.dora", _RULE_YAML, ["det/b"], moved)
    monkeypatch.chdir(tmp_path)  # not below the clone: found from the recording's folders
    assert dora_replay.find_dataflow(rec) == df
    monkeypatch.chdir(tmp_path / "clone")
    assert dora_replay.find_dataflow(rec) == df
    here = _recording(tmp_path / "here.dora", _RULE_YAML, ["det/b"], {"dataflow_path": str(df)})
    assert dora_replay.find_dataflow(here) == df  # still where it was recorded
    gone = {"dataflow_path": "/elsewhere/other.yml"}
    assert dora_replay.find_dataflow(_recording(tmp_path / "g.dora", "", [], gone)) is None
    assert dora_replay.find_dataflow(_recording(tmp_path / "n.dora", "", [])) is None
    # a bare file name only counts when the file holds the recorded dataflow
    (tmp_path / "clone" / "dataflow.yml").write_text("nodes: []\n")
    bare = {"dataflow_path": "/elsewhere/dataflow.yml"}
    assert dora_replay.find_dataflow(_recording(tmp_path / "b.dora", _RULE_YAML, [], bare)) is None
    (tmp_path / "clone" / "dataflow.yml").write_text(_RULE_YAML)
    found = dora_replay.find_dataflow(_recording(tmp_path / "b2.dora", _RULE_YAML, [], bare))
    assert found == tmp_path / "clone" / "dataflow.yml"


def _msgs(arrays: list[pa.Array]) -> list[SimpleNamespace]:
    return [SimpleNamespace(data=a) for a in arrays]


def test_report_plots_numeric_signals(tmp_path: Path) -> None:
    struct = pa.struct([("linear", pa.float64()), ("angular", pa.float64())])
    recorded = _msgs([pa.array([{"linear": 0.5, "angular": i / 10}], struct) for i in range(5)])
    replayed = _msgs([pa.array([{"linear": 0.5, "angular": i / 9}], struct) for i in range(5)])
    result = SimpleNamespace(recorded={"ctl/cmd": recorded}, replayed={"ctl/cmd": replayed})
    out = _report.write_channel_report(tmp_path / "r", Path("g/run1.dora"), "ctl/cmd", result)
    assert out.name == "run1__ctl__cmd.html"
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert page.count("<svg") == 2  # linear and angular
    assert "first difference: message #1" in page  # angular differs from message 1 on
    assert page.count("<polyline") == 4


def test_report_signal_extraction() -> None:
    sig = _report.signals_of(
        _msgs([pa.array([1.0, 2.0]), pa.array(range(100), pa.uint8()), pa.array(["a", "b"])])
    )
    assert sig["[0]"] == [1.0, None, None]
    assert sig["mean"] == [None, 49.5, None]
    assert sig["len"] == [None, 100.0, 2.0]
    assert _report.first_difference([1.0, 2.0], [1.0, 2.5]) == 1
    assert _report.first_difference([1.0], [1.0, 2.0]) == 1
    assert _report.first_difference([1.0, None], [1.0]) is None


def test_public_surface() -> None:
    import pytest_dora

    assert sorted(pytest_dora.__all__) == [
        "ChannelMismatch",
        "DoraConfig",
        "DoraItemError",
        "GoldenMissing",
        "ReplayCrashed",
        "RunningDataflow",
    ]
    for name in pytest_dora.__all__:
        assert getattr(pytest_dora, name).__module__.startswith("pytest_dora._")


def test_printed_paths_are_relative_to_where_pytest_was_started(tmp_path: Path) -> None:
    """Commands in failure messages are copied into the shell pytest ran in: a recording
    outside the project is ``../x``, not a path relative to pytest's rootdir."""
    project, outside = tmp_path / "proj", tmp_path / "dmg" / "flip.dora"
    cfg = _config.DoraConfig(root=tmp_path, cwd=project)
    assert cfg.relative(project / "golden" / "run.dora") == "golden/run.dora"
    assert cfg.relative(outside) == "../dmg/flip.dora"
    far = Path("/") / "elsewhere" / "x.dora"
    deep = _config.DoraConfig(root=tmp_path, cwd=tmp_path / "a" / "b" / "c")
    assert deep.relative(far) == str(far)  # absolute rather than ../../../..
