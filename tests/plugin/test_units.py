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


def test_live_nodes_rule() -> None:
    yaml_text = """
nodes:
  - {id: cam, path: cam.py, inputs: {tick: dora/timer/millis/10}, outputs: [image]}
  - {id: det, path: det.py, inputs: {image: {source: cam/image, queue_size: 1}}, outputs: [b]}
  - {id: gen, path: gen.py, outputs: [x]}
  - {id: ui, path: dynamic, outputs: [y]}
"""
    assert _paths.live_nodes(yaml_text) == {"det", "ui"}
    assert _paths.live_nodes(yaml_text, {"cam": "cam2.py"}) == {"cam", "det", "ui"}


def test_relocate_dataflow(tmp_path: Path) -> None:
    (tmp_path / "examples" / "robot").mkdir(parents=True)
    df = tmp_path / "examples" / "robot" / "dataflow.yml"
    df.write_text("nodes: []\n")
    moved = "/elsewhere/checkout/examples/robot/dataflow.yml"
    assert _paths.relocate_dataflow(moved, tmp_path) == df
    assert _paths.relocate_dataflow(str(df), tmp_path) is None  # still where it was recorded
    assert _paths.relocate_dataflow("/elsewhere/other.yml", tmp_path) is None
    assert _paths.relocate_dataflow(None, tmp_path) is None


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
