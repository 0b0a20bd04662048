"""User metadata checks (``send_output``'s ``metadata``): what passes, and the one-line refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dora_runtime._metadata import check_metadata
from dora_runtime.errors import NodeError


def test_accepted_values_pass_as_plain_python() -> None:
    md = {
        "flag": True,
        "n": -(2**63),
        "top": 2**63 - 1,
        "ratio": 0.5,
        "label": "x",
        "ints": (1, 2),
        "mixed_numbers": [1, 2.5],
        "words": ["a", "b"],
        "none": [],
        "np": np.int32(7),
        "timestamp": "dropped: the runtime sets it",
    }
    out = check_metadata(md)
    assert out == {
        "flag": True,
        "n": -(2**63),
        "top": 2**63 - 1,
        "ratio": 0.5,
        "label": "x",
        "ints": [1, 2],
        "mixed_numbers": [1, 2.5],
        "words": ["a", "b"],
        "none": [],
        "np": 7,
    }
    assert type(out["np"]) is int
    assert check_metadata(None) == {} and check_metadata({}) == {}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([("k", 1)], "metadata must be a dict, got list"),
        ({1: "v"}, "metadata keys must be strings, got 1"),
        (
            {"k": {"nested": 1}},
            "metadata value for 'k' is a dict; use bool, int, float, str or a list of those",
        ),
        ({"k": 2**70}, f"metadata value for 'k' ({2**70}) does not fit in a 64-bit integer"),
        ({"k": 2**63}, f"metadata value for 'k' ({2**63}) does not fit in a 64-bit integer"),
        (
            {"k": [1, -(2**64)]},
            f"metadata value for 'k' ({-(2**64)}) does not fit in a 64-bit integer",
        ),
        (
            {"k": [1, "a"]},
            "metadata list for 'k' mixes strings with other values; use one type per list",
        ),
        (
            {"k": np.uint64(2**64 - 1)},
            f"metadata value for 'k' ({2**64 - 1}) does not fit in a 64-bit integer",
        ),
    ],
)
def test_refusals_name_the_entry(metadata: Any, message: str) -> None:
    with pytest.raises(NodeError) as info:
        check_metadata(metadata)
    assert str(info.value) == message
