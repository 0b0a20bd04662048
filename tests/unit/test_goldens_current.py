"""The golden recordings CI replays embed the robot dataflow as it is in the repository: when
the dataflow file changes, every golden replay prints a "has changed since the recording" note
and runs the old one, so the goldens must be recorded again (see golden/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import dora_replay

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("golden", sorted((REPO / "golden").glob("*.dora")), ids=lambda p: p.name)
def test_a_golden_holds_the_current_dataflow(golden: Path) -> None:
    current = (REPO / "examples" / "robot" / "dataflow.yml").read_text(encoding="utf-8")
    with dora_replay.open(golden) as rec:
        assert rec.header.dataflow_yaml == current, (
            f"{golden.name} was recorded from another examples/robot/dataflow.yml: record it "
            "again as golden/README.md says"
        )
