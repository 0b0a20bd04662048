"""CLI verbs for recordings on real files: info (text/JSON), export, import, repair, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from _dora_cli import dora
from typer.testing import CliRunner

import dora_replay
from dora_cli.recording_cmds import register, repair_command

YAML = (
    "nodes:\n  - id: cam\n    path: cam.py\n    outputs: [image]\n  - id: imu\n    path: imu.py\n"
)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("repair")
    def _repair(path: Path, output: Path | None = None) -> None:
        repair_command(path, output)

    return app


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    path = tmp_path / "run.dora"
    with dora_replay.open_writer(path, YAML, {"robot": "r2", "git": "abc123"}) as w:
        for i in range(50):
            t = 1_700_000_000_000_000_000 + i * 10_000_000  # 100 Hz
            w.write(
                "cam/image", pa.array([i] * 16, pa.uint8()), log_time_ns=t, publish_time_ns=t, seq=i
            )
            if i % 2 == 0:
                w.write(
                    "imu/data", pa.array([0.5, 1.5]), log_time_ns=t, publish_time_ns=t, seq=i // 2
                )
        w.add_drops("imu/data", 4)
    return path


def test_info_text(app: typer.Typer, rec: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(rec)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in (
        "cam/image",
        "imu/data",
        "100.0",
        "50.0",
        "uint8",
        "double",
        "robot=r2",
        "cam, imu",
        "0.490 s",
    ):
        assert needle in out, needle


def test_info_json(app: typer.Typer, rec: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(rec), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    chans = {c["name"]: c for c in doc["channels"]}
    assert chans["cam/image"]["message_count"] == 50 and round(chans["cam/image"]["rate_hz"]) == 100
    assert chans["imu/data"]["drops"] == 4 and chans["imu/data"]["arrow_types"] == ["double"]
    assert doc["nodes"] == ["cam", "imu"] and doc["metadata"] == {"robot": "r2", "git": "abc123"}
    assert (
        doc["duration_s"] == pytest.approx(0.49) and doc["clean"] and doc["compression_ratio"] > 0
    )
    assert doc["problems"] == [] and doc["format_version"] == dora_replay.FORMAT_VERSION


def test_info_reports_corruption_without_failing(app: typer.Typer, rec: Path) -> None:
    raw = bytearray(rec.read_bytes())
    with dora_replay.open(rec) as r:
        first = r.parts[0].chunks[0]
    raw[first.offset + first.size - 6] ^= 0xFF
    rec.write_bytes(bytes(raw))
    result = CliRunner().invoke(app, ["info", str(rec), "--json"])
    doc = json.loads(result.output)
    assert result.exit_code == 0 and doc["lost_messages"] > 0 and "CRC" in doc["problems"][0]


def test_info_counts_a_cut_off_chunk_against_its_channel(
    app: typer.Typer, rec: Path, tmp_path: Path
) -> None:
    with dora_replay.open(rec) as r:
        last = max(r.parts[0].chunks, key=lambda e: e.offset)
        name, count = r.parts[0].channels[last.meta.channel_id].name, last.meta.message_count
    cut = tmp_path / "cut.dora"
    cut.write_bytes(rec.read_bytes()[: last.offset + last.size // 2])  # a crash inside it
    doc = json.loads(CliRunner().invoke(app, ["info", str(cut), "--json"]).output)
    chans = {c["name"]: c for c in doc["channels"]}
    assert chans[name]["lost_messages"] == count == doc["lost_messages"]
    assert sum(c["readable_messages"] for c in chans.values()) == doc["readable_messages"]
    assert [d["channel"] for d in doc["damage"]] == [name]
    text = CliRunner().invoke(app, ["info", str(cut)]).output
    header = next(line for line in text.splitlines() if line.startswith("channel"))
    row = next(line for line in text.splitlines() if line.startswith(name))
    assert "lost" in header.split()
    # nothing of the channel is left, so no Arrow type either: the lost count ends the row
    assert row.split()[1] == "0" and row.split()[-1] == str(count), text
    # the cut-off chunk is not indexed, so its times are unknown: none are promised
    assert f"{count} message(s) lost; `dora record repair" in text, text


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such recording"),
        (b"", "truncated"),
        (b"garbage!" * 10, "not a .dora recording"),
        ("folder", "is a folder, not a .dora recording"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    app: typer.Typer, tmp_path: Path, content: bytes | str | None, needle: str
) -> None:
    path = tmp_path / "bad.dora"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    for args in (
        ["info", str(path)],
        ["export", str(path), "--format", "mcap", "-o", str(tmp_path / "o.mcap")],
        ["repair", str(path), "--output", str(tmp_path / "fixed.dora")],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], result.output
        assert "Traceback" not in result.output


def test_export_and_import_round_trip(app: typer.Typer, rec: Path, tmp_path: Path) -> None:
    mcap, back, pq = tmp_path / "run.mcap", tmp_path / "back.dora", tmp_path / "pq"
    r = CliRunner().invoke(app, ["export", str(rec), "--format", "mcap", "-o", str(mcap)])
    assert r.exit_code == 0 and "wrote 75 messages" in r.output
    r = CliRunner().invoke(app, ["import", str(mcap), "-o", str(back)])
    assert r.exit_code == 0 and "imported 75 message(s) on 2 channel(s)" in r.output, r.output
    with dora_replay.open(back) as b:
        assert b.channels["cam/image"].message_count == 50 and b.dataflow_yaml == YAML
    r = CliRunner().invoke(app, ["export", str(rec), "-f", "parquet", "-o", str(pq)])
    assert r.exit_code == 0 and (pq / "imu" / "data.parquet").exists()


def test_import_of_a_non_mcap_file_is_one_line(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bag.mcap"
    bad.write_bytes(b"not mcap")
    r = CliRunner().invoke(app, ["import", str(bad), "-o", str(tmp_path / "x.dora")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "bag.mcap" in r.output


def test_importing_a_dora_recording_says_what_it_is(
    app: typer.Typer, rec: Path, tmp_path: Path
) -> None:
    """It said "InvalidMagic ...; is it a valid MCAP file?"."""
    r = CliRunner().invoke(app, ["import", str(rec), "-o", str(tmp_path / "x.dora")])
    assert r.exit_code == 1 and r.output.strip() == (
        f"error: {rec} is a .dora recording already: dora info, dora replay and pytest "
        "--dora-replay read it as it is (dora export turns it into MCAP)"
    )
    assert not (tmp_path / "x.dora").exists()


def test_repair_command(app: typer.Typer, rec: Path) -> None:
    raw = rec.read_bytes()
    rec.write_bytes(raw[: len(raw) - 300])  # footer and tail gone
    r = CliRunner().invoke(app, ["repair", str(rec)])
    assert r.exit_code == 0 and "recovered 75 message(s)" in r.output and "lost 0" in r.output
    with dora_replay.open(rec) as fixed:
        assert fixed.clean and fixed.message_count == 75


def test_repair_leaves_an_intact_file_as_it_is(app: typer.Typer, rec: Path) -> None:
    """A golden under version control stays byte-identical: no "repaired" stamp on a good file."""
    from dora_replay.repair import repair

    before = rec.read_bytes()
    r = CliRunner().invoke(app, ["repair", str(rec)])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == (
        f"{rec} is intact (every chunk checks out and its index is in place): nothing to "
        "repair, the file is left as it is"
    )
    assert repair(rec, rec).intact  # -o naming the file itself: the same
    assert rec.read_bytes() == before


def test_cli_module_does_not_import_pyarrow() -> None:
    code = "import sys, dora_cli.recording_cmds; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_export_of_a_damaged_file_warns_what_is_missing(
    app: typer.Typer, rec: Path, tmp_path: Path
) -> None:
    data = rec.read_bytes()
    cut = tmp_path / "cut.dora"
    cut.write_bytes(data[: len(data) * 2 // 3])  # the footer and the last chunks are gone
    r = CliRunner().invoke(app, ["export", str(cut), "-f", "mcap", "-o", str(tmp_path / "c.mcap")])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "damaged" in r.output and "could not be read" in r.output


def test_record_of_a_missing_dataflow_file_says_so(tmp_path: Path) -> None:
    """``dora record X`` attaches to a running dataflow named X when no file X exists; a
    mistyped YAML path used to be taken for such a name and answered "no coordinator is
    running". The usage line named the hidden sub-command too."""
    home = {"DORA_HOME": str(tmp_path / "home")}
    r = dora("record", "flow.yml", "-o", "x.dora", cwd=tmp_path, env=home)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: flow.yml: file not found; check the path", r.stderr
    r = dora("record", "flow.yml", cwd=tmp_path, env=home)
    assert r.returncode == 2 and "Usage: dora record [OPTIONS] {DATAFLOW}" in r.stderr, r.stderr
    r = dora("record", cwd=tmp_path, env=home)  # bare: a usage error, as bare `dora run`
    assert r.returncode == 2 and "Usage: dora record [OPTIONS] {DATAFLOW}" in r.stderr, r.stderr
    assert "Missing argument 'DATAFLOW'" in r.stderr, r.stderr
    r = dora("record", "my-dataflow", cwd=tmp_path, env=home)  # a name: attach mode
    assert r.returncode == 2 and "Usage: dora record [OPTIONS] {DATAFLOW}" in r.stderr, r.stderr
    r = dora("record", "my-dataflow", "-o", "x.dora", cwd=tmp_path, env=home)
    assert r.returncode == 1 and "no coordinator is running" in r.stderr, r.stderr
    assert r.stderr.startswith("error: my-dataflow: no such file, and no running dataflow")


def test_info_on_damage_that_lost_nothing(app: typer.Typer, rec: Path, tmp_path: Path) -> None:
    """A cut end marker, or a channel record restored from the footer's copy: `dora info` says
    nothing was lost (it used to print `lost:` and `0 message(s) lost`) and how to rewrite it."""
    from dora_replay._records import OP_CHANNEL, TAIL_SIZE, decode_tail, parse_prefix

    raw = rec.read_bytes()
    cut = tmp_path / "cut.dora"
    cut.write_bytes(raw[:-8])
    out = CliRunner().invoke(app, ["info", str(cut)]).output
    assert "75 messages in " in out and "(end marker damaged: every message is accounted for" in out
    assert not any(line.startswith("lost:") or " lost" in line for line in out.splitlines()[1:])
    pos, end = 8, len(raw) - TAIL_SIZE if decode_tail(raw[-TAIL_SIZE:]) is not None else len(raw)
    while pos < end:  # the first CHANNEL record
        pre = parse_prefix(raw[pos : pos + 20], pos)
        if pre.opcode == OP_CHANNEL:
            break
        pos += pre.size
    flipped = bytearray(raw)
    flipped[pos + pre.size - 2] ^= 0xFF
    bad = tmp_path / "record.dora"
    bad.write_bytes(bytes(flipped))
    result = CliRunner().invoke(app, ["info", str(bad)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("75 messages in ") for line in lines), result.output
    assert any(line.startswith("damaged: ") and "no message lost" in line for line in lines)
    assert f"no message lost; `dora record repair {bad}` rewrites the damaged part" in lines
    assert not any(line.startswith("lost:") for line in lines), result.output


def test_a_dataflow_or_mcap_file_given_as_a_recording_gets_a_hint(
    app: typer.Typer, tmp_path: Path
) -> None:
    yml = tmp_path / "flow.yml"
    yml.write_text(YAML)
    mcap = tmp_path / "run.mcap"
    mcap.write_bytes(b"\x89MCAP0\r\n" + b"\0" * 64)
    for path, hint in (
        (yml, f"it looks like a dataflow file; record it with `dora record {yml} -o run.dora`"),
        (mcap, f"it looks like an MCAP file; `dora import {mcap} -o run.dora` converts it"),
    ):
        result = CliRunner().invoke(app, ["info", str(path)])
        assert result.exit_code == 1
        assert result.output.strip().endswith(hint), result.output
