"""Damaged goldens fail the gate: a chunk that fails its CRC, a file cut in half, a file that is
not a recording at all. Each failure names the file, what was lost (the recording's
``problems``) and what to do; the other recordings still run. ``dora replay --assert`` agrees.

Real replays of the recorded ``flow/`` (see ``conftest.py``) with real damaged copies of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dora_replay
from dora_replay._reader import PartFile
from dora_replay.info import problem_text
from dora_replay.repair import repair

REPO = Path(__file__).resolve().parents[2]


def _chunks(path: Path) -> list[tuple[str, int, int]]:
    """``(channel, offset, size)`` of every chunk of ``path``, in file order."""
    part = PartFile(path)
    try:
        return [(part.channels[c.meta.channel_id].name, c.offset, c.size) for c in part.chunks]
    finally:
        part.close()


def flipped(golden: Path, out: Path, channel: str = "scale/scaled") -> Path:
    """A copy of ``golden`` with one byte flipped inside the first chunk of ``channel``."""
    _, offset, size = next(c for c in _chunks(golden) if c[0] == channel)
    raw = bytearray(golden.read_bytes())
    raw[offset + size - 10] ^= 0x10  # inside the compressed body: the chunk fails its CRC
    out.write_bytes(bytes(raw))
    return out


def truncated(golden: Path, out: Path, at: int | None = None) -> Path:
    """A copy of ``golden`` cut in the middle of the chunk found at byte ``at`` (default: half
    the file), so the cut always loses part of a chunk."""
    raw = golden.read_bytes()
    at = len(raw) // 2 if at is None else at
    _, offset, size = next(c for c in _chunks(golden) if c[1] <= at < c[1] + c[2])
    out.write_bytes(raw[: offset + size // 2])
    return out


def lost(path: Path) -> tuple[list[str], int]:
    """What the reader says ``path`` lost: problem messages and the count of lost messages."""
    with dora_replay.open(path) as rec:
        problems = rec.verify()
        assert problems, f"{path} is not damaged"
        texts = [problem_text(rec, p) for p in problems]  # times in seconds, as reports say
    return texts, sum(p.lost_messages or 0 for p in problems)


def damage_head(path: Path) -> str:
    """How the failure starts to describe ``path``'s damage: a cut-off file says so first."""
    messages, count = lost(path)
    if any("file ends inside" in m for m in messages):
        return "the file is cut off: whatever was recorded after the cut is gone"
    return f"{count} recorded message(s) could not be read"


def _section(out: str, title: str) -> str:
    start = out.index(title)
    end = out.find("\n___", start + len(title))
    return out[start : end if end != -1 else len(out)]


@pytest.mark.slow
def test_damaged_goldens_fail_each_channel_with_what_was_lost(project) -> None:
    golden = project.golden
    flip = flipped(golden, golden.with_name("zz_flip.dora"))
    trunc = truncated(golden, golden.with_name("zz_trunc.dora"))
    result = project.run(
        "--dora-replay", "golden/zz_flip.dora", "--dora-replay", "golden/zz_trunc.dora",
        "--dora-replay", "golden/run.dora", "-rA",
    )  # fmt: skip
    left = dora_replay.compared_channels(trunc)  # a channel whose chunks were all cut is gone
    assert left
    result.assert_outcomes(passed=2, failed=2 + len(left))
    out = result.stdout.str()
    for damaged, channels in ((flip, ["scale/scaled", "total/sum"]), (trunc, left)):
        rel = f"golden/{damaged.name}"
        messages, count = lost(damaged)
        for channel in channels:
            section = _section(out, f" {channel} in {rel} ")
            assert f"{rel} is damaged: {damage_head(damaged)}" in section
            for message in messages:
                assert f"lost: {message}" in section, section
            # recording again comes first (a repaired golden gates only what survived), with
            # the dataflow the golden was made from, as typed from where pytest started
            assert f"record the golden again: dora record flow/dataflow.yml -o {rel}" in section
            assert (
                f"`dora record repair {rel}` makes it readable, but a repaired golden checks "
                "only what survived"
            ) in section
            assert "Traceback" not in section
            assert f"FAILED {rel}::{channel} - {rel} is damaged: " in out
    flip_scaled = _section(out, " scale/scaled in golden/zz_flip.dora ")
    assert "fails its CRC" in flip_scaled
    assert "the readable part was compared: scale/scaled: ok (" in flip_scaled
    assert "not compared: their recorded outputs or inputs were lost (damaged recording)" in (
        flip_scaled
    )
    assert "for inputs the recording did not handle" not in out
    assert "file ends inside a chunk of" in _section(out, f" {left[0]} in golden/zz_trunc.dora ")
    assert "PASSED golden/run.dora::scale/scaled" in out


@pytest.mark.slow
def test_recording_a_repaired_golden_again_drops_the_repair_note(project) -> None:
    """The advice reuses the golden's own ``--meta``, not what ``dora record repair`` wrote
    (a golden recorded again is whole: it must not say it was repaired)."""
    cut = truncated(project.golden, project.golden.with_name("zz_cut.dora"))
    repair(cut)
    with dora_replay.open(cut) as rec:
        assert rec.metadata["repaired_lost"] != "0"
    last = _chunks(cut)[-1][0]
    damaged = flipped(cut, cut, channel=last)  # and then one of its chunks goes bad too
    result = project.run("--dora-replay", "golden/zz_cut.dora")
    out = result.stdout.str()
    (advice,) = [ln for ln in out.splitlines() if ln.startswith("record the golden again: ")][:1]
    assert f"-o golden/{damaged.name}" in advice
    assert "repaired" not in advice and "dataflow_path" not in advice, advice


@pytest.mark.slow
def test_update_golden_does_not_rewrite_a_damaged_golden(project) -> None:
    """``--dora-update-golden`` cannot give back lost inputs: the items fail, the file stays."""
    project.scale_v2(3.5)  # outputs differ, so an intact golden would be rewritten
    project.pyproject('[tool.pytest_dora.replace]\nscale = "scale_v2.py"\n')
    flip = flipped(project.golden, project.golden)
    before = flip.read_bytes()
    result = project.run("--dora-replay", "golden/run.dora", "--dora-update-golden")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "golden/run.dora is damaged: " in out and "first difference: " in out
    assert "rewrote" not in out
    assert flip.read_bytes() == before


@pytest.mark.slow
def test_the_fixture_asserts_on_a_damaged_recording(project) -> None:
    flipped(project.golden, project.golden)
    project.pytester.makepyfile(
        test_golden="""
        import pytest

        def test_damaged(dora_replay):
            result = dora_replay("golden/run.dora")
            assert result.ok and result.damaged and result.lost_messages > 0
            with pytest.raises(AssertionError, match="the recording is damaged: "):
                result.assert_matches()
        """
    )
    project.run("test_golden.py").assert_outcomes(passed=1)


@pytest.mark.slow
def test_an_unreadable_recording_is_one_failing_item_and_the_others_run(project) -> None:
    """Random bytes, and a file cut inside the first chunk of any compared channel (no
    compared channel left): one failing item each, no collection error stopping the session."""
    bad = project.golden.with_name("junk.dora")
    bad.write_bytes(os.urandom(4096))
    compared = set(dora_replay.compared_channels(project.golden))
    # the first chunk of any compared channel (which one the recorder flushed first varies)
    first = min(c[1] for c in _chunks(project.golden) if c[0] in compared)
    early = truncated(project.golden, project.golden.with_name("early.dora"), at=first)
    assert not dora_replay.compared_channels(early)
    result = project.run("--dora-replay", "golden/", "-v")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "golden/early.dora::damaged FAILED" in out
    section = _section(out, " golden/early.dora (damaged) ")
    messages, count = lost(early)
    assert f"golden/early.dora is damaged: {damage_head(early)}" in section
    assert f"lost: {messages[0]}" in section
    assert "no output of a live node is left to compare, so nothing was compared" in section
    assert "record the golden again: dora record flow/dataflow.yml -o golden/early.dora" in section
    assert "golden/junk.dora::unreadable FAILED" in out
    section = _section(out, " golden/junk.dora (unreadable) ")
    assert "golden/junk.dora cannot be read: not a .dora recording (it does not start as one)" in (
        section
    )
    assert "none of its messages can be replayed, so nothing was compared" in section
    assert "record the golden again: dora record '<dataflow.yml>' -o golden/junk.dora" in section
    assert "Traceback" not in section


def _dora_replay(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dora_cli.main", "replay", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )


@pytest.mark.slow
def test_dora_replay_assert_fails_on_a_damaged_recording(project, tmp_path: Path) -> None:
    """The reproduce command of a failing item agrees: the comparison of the readable part is
    shown, the verdict says the recording is damaged and how much was lost, exit 1."""
    flip = flipped(project.golden, project.golden.with_name("zz_flip.dora"))
    _, count = lost(flip)
    args = ["golden/zz_flip.dora", "--speed", "0", "-q", "--log-dir", str(tmp_path / "l")]
    r = _dora_replay(*args, "--assert", cwd=project.path)
    assert r.returncode == 1, r.stdout + r.stderr
    damage = f"the recording is damaged: {count} recorded message(s) could not be read"
    assert f"all 2 channel(s) match in the readable part; {damage}" in r.stdout, r.stdout
    assert "warning: chunk of scale/scaled (" in r.stdout
    assert (
        "damaged recording: `dora record repair golden/zz_flip.dora` rewrites it with what is "
        "readable (then replay it again), or record it again"
    ) in r.stdout
    assert "their recorded outputs or inputs were lost (damaged recording)" in r.stdout
    assert "for inputs the recording did not handle" not in r.stdout
    assert r.stderr.strip().splitlines()[-1] == f"error: {damage}; see above"

    plain = _dora_replay(*args, cwd=project.path)  # without --assert: the report, exit 0
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert damage in plain.stdout

    fix = subprocess.run(  # what the failure advises, then the same check passes
        [sys.executable, "-m", "dora_cli.main", "record", "repair", "golden/zz_flip.dora"],
        cwd=project.path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fix.returncode == 0, fix.stdout + fix.stderr
    repaired = _dora_replay(*args, "--assert", cwd=project.path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "damaged" not in repaired.stdout
