"""The comparer: causal alignment, tolerances, readable and JSON reports; tolerance parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from dora_replay import Message, Tolerances
from dora_replay.compare import compare_outputs, dropped_note
from dora_replay.tolerances import (
    Tolerance,
    ToleranceError,
    load_tolerances,
    parse_tolerance_flag,
)

BOX = pa.struct([("x_min", pa.int32()), ("label", pa.string()), ("score", pa.float32())])


def msg(channel: str, data, seq: int, cause: str | None = None, **metadata) -> Message:
    arr = data if isinstance(data, pa.Array) else pa.array(data)
    return Message(channel, arr, 1000 + seq, 1000 + seq, seq, cause, metadata)


def boxes(x: int, score: float = 0.9) -> pa.Array:
    return pa.array([{"x_min": x, "label": "red", "score": score}], BOX)


def test_identical_outputs_match() -> None:
    rec = {"det/boxes": [msg("det/boxes", boxes(i), i, f"cam/image#{i}") for i in range(5)]}
    cmp = compare_outputs(rec, rec, seq_maps={"cam/image": list(range(5))})
    assert cmp.ok
    assert cmp.channels["det/boxes"].matched == 5
    assert "all 1 channel(s) match" in cmp.report()


def test_nothing_compared_is_not_reported_as_a_match() -> None:
    """A replay stopped before any output was produced (``q`` at the first step) compares no
    message: the verdict says so instead of "all match"."""
    cmp = compare_outputs({"det/boxes": []}, {"det/boxes": []}, seq_maps={"cam/image": []})
    head = cmp.report().splitlines()[0]
    assert head == "no output message was compared (1 channel(s))"


def test_changed_struct_field_is_reported_precisely() -> None:
    rec = {"det/boxes": [msg("det/boxes", boxes(i * 10), i, f"cam/image#{i}") for i in range(4)]}
    rep = {
        "det/boxes": [
            msg("det/boxes", boxes(i * 10 + (4 if i == 2 else 0)), i, f"cam/image#{i}")
            for i in range(4)
        ]
    }
    cmp = compare_outputs(rec, rep, seq_maps={"cam/image": list(range(4))})
    assert not cmp.ok
    (d,) = cmp.differences
    assert (d.channel, d.index, d.kind, d.cause) == ("det/boxes", 2, "value", "cam/image#2")
    assert "20" in d.recorded and "24" in d.replayed
    assert any("x_min" in c and "20 -> 24" in c for c in d.changes)
    assert d.max_abs == 4
    report = cmp.report()
    assert "det/boxes message #2 (cause cam/image#2): value differs" in report
    json.dumps(cmp.to_dict())  # serialisable


def test_float_arrays_within_tolerance_pass_and_outside_fail() -> None:
    rec = {"p/t": [msg("p/t", pa.array([1.0, 2.0, 3.0]), 0)]}
    rep = {"p/t": [msg("p/t", pa.array([1.0, 2.0005, 3.0]), 0)]}
    assert not compare_outputs(rec, rep).ok
    tol = parse_tolerance_flag("p/t:atol=1e-3")
    cmp = compare_outputs(rec, rep, tolerances=tol)
    assert cmp.ok
    assert cmp.channels["p/t"].max_abs == pytest.approx(5e-4)
    tight = parse_tolerance_flag("p/t:atol=1e-5,rtol=1e-5")
    (d,) = compare_outputs(rec, rep, tolerances=tight).differences
    assert d.max_abs == pytest.approx(5e-4) and d.max_rel == pytest.approx(2.5e-4)
    assert "[1]: 2.0 -> 2.0005" in d.changes[0]


def test_ignored_fields_and_metadata() -> None:
    rec = {"det/boxes": [msg("det/boxes", boxes(1, 0.5), 0, frame=1, debug_ms=3.0)]}
    rep = {"det/boxes": [msg("det/boxes", boxes(1, 0.7), 0, frame=1, debug_ms=9.0)]}
    assert not compare_outputs(rec, rep).ok
    tol = parse_tolerance_flag("det/*:ignore_fields=score,ignore_metadata=debug_ms")
    assert compare_outputs(rec, rep, tolerances=tol).ok
    changed = {"det/boxes": [msg("det/boxes", boxes(1, 0.5), 0, frame=2, debug_ms=3.0)]}
    (d,) = compare_outputs(rec, changed, tolerances=tol).differences
    assert d.kind == "metadata" and "frame" in " ".join(d.changes)


def test_a_differing_channel_line_gives_its_largest_error() -> None:
    rec = {"a/b": [msg("a/b", [1.0, 2.0], 0), msg("a/b", [1.0], 1)]}
    rep = {"a/b": [msg("a/b", [1.0, 2.5], 0), msg("a/b", [1.1], 1)]}
    line = compare_outputs(rec, rep).channels["a/b"].summary()
    assert line == (
        "a/b: 2 of 2 message(s) differ, 0 missing, 0 extra, largest error abs 0.5 rel 0.25"
    )


def test_tolerances_that_cannot_apply_are_noted() -> None:
    """A typo in a tolerance's channel or field name used to pass without a word (the check
    then failed, with no hint why the tolerance did not help)."""
    rec = {"det/boxes": [msg("det/boxes", boxes(1), 0)], "plan/t": [msg("plan/t", [1.0], 0)]}
    tol = parse_tolerance_flag("det/boxs:atol=1")
    tol = parse_tolerance_flag("det/*:ignore_fields=scroe|label", tol)
    tol = parse_tolerance_flag("plan/t:ignore_fields=x", tol)  # plain numbers: no fields
    notes = compare_outputs(rec, rec, tolerances=tol).notes
    assert notes == [
        "tolerance for `det/boxs` matches no compared channel (compared: det/boxes, plan/t)",
        "ignore_fields of det/boxes: `scroe` not in its values' fields",
        "ignore_fields of plan/t: its values are double, not structs",
    ]
    nested = pa.array([{"pose": {"x": 1.0}}])
    rec = {"a/b": [msg("a/b", nested, 0)]}
    ok = parse_tolerance_flag("a/b:ignore_fields=pose.x")
    assert compare_outputs(rec, rec, tolerances=ok).notes == []
    bad = parse_tolerance_flag("a/b:ignore_fields=pose.y|pose.x.z")
    assert compare_outputs(rec, rec, tolerances=bad).notes == [
        "ignore_fields of a/b: `pose.y`, `pose.x.z` not in its values' fields"
    ]


def test_alignment_by_cause_translates_feeder_and_live_seqs() -> None:
    # Recording: the camera's seqs start at 10 and the detector dropped frame 11 (queue full).
    rec = {
        "det/boxes": [
            msg("det/boxes", boxes(10), 0, "cam/image#10"),
            msg("det/boxes", boxes(12), 1, "cam/image#12"),
        ],
        "plan/t": [
            msg("plan/t", [10.0], 0, "det/boxes#0"),
            msg("plan/t", [12.0], 1, "det/boxes#1"),
        ],
    }
    # Replay: the feeder sent 10, 11, 12 as its seqs 0, 1, 2; the detector handled all three.
    rep = {
        "det/boxes": [
            msg("det/boxes", boxes(v), k, f"cam/image#{k}") for k, v in enumerate((10, 11, 12))
        ],
        "plan/t": [
            msg("plan/t", [float(v)], k, f"det/boxes#{k}") for k, v in enumerate((10, 11, 12))
        ],
    }
    cmp = compare_outputs(rec, rep, seq_maps={"cam/image": [10, 11, 12]})
    assert cmp.ok, cmp.report()
    for c in ("det/boxes", "plan/t"):
        assert cmp.channels[c].matched == 2
        assert cmp.channels[c].unpaired == 1  # frame 11: not handled in the recording


def test_outputs_lost_to_dropped_inputs_are_not_reproduced_downstream_too() -> None:
    """At ``--speed`` > 0 the detector dropped frame 1 (queue full): neither its box nor the
    planner's target for it exist in the replay. Both are "not reproduced", not missing, and
    not "replayed outputs for inputs the recording did not handle"."""
    rec = {
        "det/boxes": [msg("det/boxes", boxes(i), i, f"cam/image#{i}") for i in range(3)],
        "plan/t": [msg("plan/t", [float(i)], i, f"det/boxes#{i}") for i in range(3)],
    }
    rep = {
        "det/boxes": [
            msg("det/boxes", boxes(v), k, f"cam/image#{v}") for k, v in enumerate((0, 2))
        ],
        "plan/t": [msg("plan/t", [float(v)], k, f"det/boxes#{k}") for k, v in enumerate((0, 2))],
    }
    seq_maps = {"cam/image": [0, 1, 2]}
    notes = {"det": dropped_note("det"), "plan": dropped_note("plan", "det")}
    cmp = compare_outputs(rec, rep, seq_maps=seq_maps, dropping_nodes=notes)
    assert cmp.ok, cmp.report()
    for c in ("det/boxes", "plan/t"):
        cc = cmp.channels[c]
        assert (cc.matched, cc.not_reproduced, cc.unpaired) == (2, 1, 0)
        assert cc.summary().endswith(
            "; 1 recorded output(s) not reproduced: inputs were dropped on the way (queue full)"
        )
        assert cc.to_dict()["not_reproduced"] == 1
    assert cmp.channels["plan/t"].notes == [
        "node `det`, upstream of `plan`, dropped inputs during the replay (queue full); recorded "
        "outputs they would have led to are not counted as missing. Replay with --speed 0 for "
        "an exact comparison."
    ]
    # only the dropping node itself excused: the planner's output is missing
    cmp = compare_outputs(rec, rep, seq_maps=seq_maps, dropping_nodes={"det"})
    assert cmp.channels["det/boxes"].ok and cmp.channels["plan/t"].count("missing") == 1


def test_missing_and_extra_outputs() -> None:
    rec = {"d/o": [msg("d/o", [i], i, f"s/x#{i}") for i in range(3)]}
    rep = {
        "d/o": [
            msg("d/o", [0], 0, "s/x#0"),
            msg("d/o", [2], 1, "s/x#2"),
            msg("d/o", [2], 2, "s/x#2"),
        ]
    }
    cmp = compare_outputs(rec, rep, seq_maps={"s/x": [0, 1, 2]})
    kinds = sorted(d.kind for d in cmp.differences)
    assert kinds == ["extra", "missing"]
    missing = next(d for d in cmp.differences if d.kind == "missing")
    assert missing.index == 1 and missing.cause == "s/x#1"


def test_outputs_without_cause_align_by_order_and_window() -> None:
    rec = {"t/o": [msg("t/o", [i], i, None) for i in range(4)]}
    rep = {"t/o": [msg("t/o", [i], i, None) for i in range(2, 4)]}
    cmp = compare_outputs(rec, rep, window=(1002, None))
    assert cmp.ok and cmp.channels["t/o"].matched == 2 and cmp.channels["t/o"].skipped == 2


def test_outputs_of_timer_ticks_align_by_tick() -> None:
    """A replay sends the recorded ticks with their seqs: tick 7's output is compared with the
    recorded output of tick 7, whatever came before (a golden update of a replay from
    --start paired them by order, and gave tick 9's output the times of tick 0's)."""
    rec = {"t/o": [msg("t/o", [i], i, f"dora/timer/millis/10#{i}") for i in range(4)]}
    rep = {"t/o": [msg("t/o", [i], i, f"dora/timer/millis/10#{i}") for i in range(2, 4)]}
    cmp = compare_outputs(rec, rep, window=(1002, None))
    assert cmp.ok and cmp.channels["t/o"].matched == 2 and cmp.channels["t/o"].skipped == 2
    cmp = compare_outputs(rec, rep)  # no window: ticks 0 and 1 were not replayed
    assert cmp.channels["t/o"].matched == 2 and cmp.channels["t/o"].count("missing") == 2


def test_type_change_is_a_difference() -> None:
    rec = {"a/b": [msg("a/b", pa.array([1], pa.int32()), 0)]}
    rep = {"a/b": [msg("a/b", pa.array([1], pa.int64()), 0)]}
    (d,) = compare_outputs(rec, rep).differences
    assert d.kind == "type" and "int32 -> int64" in d.changes[0]


def test_tolerance_toml_and_precedence(tmp_path: Path) -> None:
    f = tmp_path / "tol.toml"
    f.write_text(
        '[default]\natol = 1e-9\n\n["planner/*"]\natol = 1e-3\n\n'
        '["planner/target"]\nrtol = 0.01\nignore_metadata = ["debug"]\n'
    )
    tol = load_tolerances(f)
    assert tol.for_channel("x/y") == Tolerance(atol=1e-9)
    assert tol.for_channel("planner/other").atol == 1e-3
    assert tol.for_channel("planner/target") == Tolerance(rtol=0.01, ignore_metadata=("debug",))
    parse_tolerance_flag("*:atol=0.5", tol)
    assert tol.default.atol == 0.5


@pytest.mark.parametrize(
    "flag, words",
    [
        ("planner/target", "expected CHANNEL:key=value"),
        ("a/b:atol=x", "not a number"),
        ("a/b:speed=1", "unknown key"),
        ("a/b:atol=-1", "must be >= 0"),
    ],
)
def test_bad_tolerance_flags(flag: str, words: str) -> None:
    with pytest.raises(ToleranceError, match=words):
        parse_tolerance_flag(flag)


def test_bad_toml(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[default\n")
    with pytest.raises(ToleranceError, match="invalid TOML"):
        load_tolerances(f)
    assert Tolerances().for_channel("a/b").exact


def test_dropping_reaches_every_live_node_downstream(tmp_path: Path) -> None:
    from dora_replay.replay import _with_downstream
    from dora_runtime.descriptor import load_descriptor

    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n"
        "  - {id: cam, path: dora-echo, outputs: [image]}\n"
        "  - {id: det, path: dora-echo, inputs: {i: cam/image}, outputs: [boxes]}\n"
        "  - {id: plan, path: dora-echo, inputs: {b: det/boxes}, outputs: [t]}\n"
        "  - {id: ctrl, path: dora-echo, inputs: {t: plan/t}, outputs: [cmd]}\n"
        "  - {id: logger, path: dora-echo, inputs: {i: cam/image}}\n"
    )
    desc = load_descriptor(df, defer_missing_files=True)
    notes = _with_downstream(desc, {"det"}, ["det", "plan", "ctrl", "logger"])
    assert notes == {
        "det": dropped_note("det"),
        "plan": dropped_note("plan", "det"),
        "ctrl": dropped_note("ctrl", "det"),
    }
    assert _with_downstream(desc, {"det"}, ["det", "ctrl"]) == {"det": dropped_note("det")}
