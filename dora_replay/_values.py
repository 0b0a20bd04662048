"""Comparing two Arrow arrays (one message each) and two metadata maps under a tolerance.

Flat numeric arrays are compared with numpy (max abs / rel error, count of elements out of
tolerance); anything else (structs, lists, strings) goes through Python values with the same
numeric rule at the leaves, and differences are described with a compact ``deepdiff``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pt

from dora_replay.tolerances import Tolerance

_MAX_CHANGES = 8
_MAX_REPR = 160


@dataclass
class ValueDiff:
    """How two values differ. ``kind``: ``type``, ``length``, ``value`` or ``metadata``;
    ``changes``: compact ``path: recorded -> replayed`` lines; errors are over numeric leaves."""

    kind: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    bad: int = 0
    total: int = 0
    first_index: int | None = None
    changes: list[str] = field(default_factory=list)


@dataclass
class Errors:
    """Largest numeric errors seen so far (also for messages within tolerance)."""

    max_abs: float = 0.0
    max_rel: float = 0.0

    def add(self, a: float, r: float) -> None:
        self.max_abs = max(self.max_abs, a)
        self.max_rel = max(self.max_rel, r)


def short(value: Any, limit: int = _MAX_REPR) -> str:
    """A one-line, length-capped repr of an array or Python value."""
    if isinstance(value, pa.Array):
        t = value.type
        if (pt.is_integer(t) or pt.is_floating(t)) and len(value) > 12:
            head = ", ".join(repr(v) for v in value.slice(0, 6).to_pylist())
            value_s = f"{t}[{len(value)}] [{head}, ...]"
        else:
            value_s = repr(value.to_pylist())
    else:
        value_s = repr(value)
    return value_s if len(value_s) <= limit else value_s[: limit - 3] + "..."


def drop_fields(arr: pa.Array, names: tuple[str, ...]) -> pa.Array:
    """``arr`` without the struct fields ``names`` (dotted paths reach into nested structs)."""
    if not names or not pt.is_struct(arr.type):
        return arr
    top = {n.split(".", 1)[0] for n in names}
    nested: dict[str, tuple[str, ...]] = {}
    for n in names:
        head, _, rest = n.partition(".")
        if rest:
            nested[head] = (*nested.get(head, ()), rest)
    keep_names, keep_arrays = [], []
    for i in range(arr.type.num_fields):
        name = arr.type.field(i).name
        if name in top and name not in nested:
            continue
        child = pc.struct_field(arr, [i])
        keep_names.append(name)
        keep_arrays.append(drop_fields(child, nested.get(name, ())))
    mask = arr.is_null() if arr.null_count else None
    if not keep_names:
        return pa.nulls(len(arr), pa.null())
    return pa.StructArray.from_arrays(keep_arrays, names=keep_names, mask=mask)


def unknown_fields(t: pa.DataType, names: tuple[str, ...]) -> list[str]:
    """The dotted field paths of ``names`` that a struct type ``t`` does not have (none when
    ``t`` is not a struct: such values have no fields to check)."""
    if not pt.is_struct(t):
        return []
    out = []
    for n in names:
        cur: pa.DataType = t
        for part in n.split("."):
            if not pt.is_struct(cur) or cur.get_field_index(part) < 0:
                out.append(n)
                break
            cur = cur.field(part).type
    return out


def _numeric(t: pa.DataType) -> bool:
    return pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t)


def compare_arrays(
    rec: pa.Array, rep: pa.Array, tol: Tolerance, errors: Errors
) -> ValueDiff | None:
    """None when ``rep`` matches ``rec`` within ``tol``; else how they differ."""
    if tol.ignore_fields:
        rec, rep = drop_fields(rec, tol.ignore_fields), drop_fields(rep, tol.ignore_fields)
    if rec.type != rep.type:
        return ValueDiff("type", changes=[f"type: {rec.type} -> {rep.type}"])
    if len(rec) != len(rep):
        d = _compare_py(rec.to_pylist(), rep.to_pylist(), tol, errors)
        diff = d or ValueDiff("value")
        diff.kind = "length"
        diff.changes.insert(0, f"length: {len(rec)} -> {len(rep)}")
        return diff
    if _numeric(rec.type) and not rec.null_count and not rep.null_count:
        return _compare_numpy(rec, rep, tol, errors)
    if rec.equals(rep):
        return None
    return _compare_py(rec.to_pylist(), rep.to_pylist(), tol, errors)


def _compare_numpy(
    rec: pa.Array, rep: pa.Array, tol: Tolerance, errors: Errors
) -> ValueDiff | None:
    a = rec.to_numpy(zero_copy_only=False)
    b = rep.to_numpy(zero_copy_only=False)
    if a.dtype == np.bool_:
        a, b = a.astype(np.int8), b.astype(np.int8)
    if np.array_equal(a, b, equal_nan=pt.is_floating(rec.type)):
        return None
    af, bf = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(af - bf)
        both_nan = np.isnan(af) & np.isnan(bf)
        diff[both_nan] = 0.0
        diff[np.isnan(diff)] = np.inf  # NaN on one side only
        rel = np.where(af != 0, diff / np.abs(af), np.where(diff > 0, np.inf, 0.0))
    bad = diff > tol.atol + tol.rtol * np.abs(af)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    errors.add(max_abs, max_rel)
    n_bad = int(bad.sum())
    if not n_bad:
        return None
    idx = np.flatnonzero(bad)
    changes = [f"[{i}]: {a[i].item()!r} -> {b[i].item()!r}" for i in idx[:_MAX_CHANGES].tolist()]
    if n_bad > _MAX_CHANGES:
        changes.append(f"... {n_bad - _MAX_CHANGES} more element(s)")
    return ValueDiff("value", max_abs, max_rel, n_bad, int(a.size), int(idx[0]), changes)


def _leaf_errors(a: Any, b: Any, tol: Tolerance, errors: Errors, state: list[int]) -> bool:
    """Walk two Python values; True when equal within tolerance. ``state`` = [bad, total]."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            state[0] += 1
            return False
        return all([_leaf_errors(a[k], b[k], tol, errors, state) for k in a])
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            state[0] += 1
            return False
        return all([_leaf_errors(x, y, tol, errors, state) for x, y in zip(a, b, strict=True)])
    both_num = isinstance(a, int | float) and isinstance(b, int | float)
    if both_num and not isinstance(a, bool) and not isinstance(b, bool):
        state[1] += 1
        if a == b or (
            isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        ):
            return True
        d = abs(float(a) - float(b))
        if math.isnan(d):
            d = math.inf
        errors.add(d, d / abs(a) if a else math.inf)
        ok = d <= tol.atol + tol.rtol * abs(float(a))
        state[0] += not ok
        return ok
    state[1] += 1
    if a != b:
        state[0] += 1
        return False
    return True


def _compare_py(a: Any, b: Any, tol: Tolerance, errors: Errors) -> ValueDiff | None:
    local = Errors()
    state = [0, 0]
    if _leaf_errors(a, b, tol, local, state):
        errors.add(local.max_abs, local.max_rel)
        return None
    errors.add(local.max_abs, local.max_rel)
    return ValueDiff(
        "value", local.max_abs, local.max_rel, state[0], state[1], changes=deep_changes(a, b, tol)
    )


def deep_changes(a: Any, b: Any, tol: Tolerance) -> list[str]:
    """Compact ``deepdiff`` of two Python values: ``path: old -> new`` lines, values within
    tolerance left out."""
    from deepdiff import DeepDiff

    dd = DeepDiff(a, b, verbose_level=2)
    lines: list[str] = []
    for kind, entries in dd.items():
        if kind in ("values_changed", "type_changes"):
            for path, change in entries.items():
                old, new = change.get("old_value"), change.get("new_value")
                if _within(old, new, tol):
                    continue
                lines.append(f"{path}: {short(old, 60)} -> {short(new, 60)}")
        elif isinstance(entries, dict):
            for path, value in entries.items():
                lines.append(f"{kind} {path}: {short(value, 60)}")
        else:
            for path in entries:
                lines.append(f"{kind} {path}")
    if len(lines) > _MAX_CHANGES:
        lines = lines[:_MAX_CHANGES] + [f"... {len(lines) - _MAX_CHANGES} more change(s)"]
    return lines


def _within(a: Any, b: Any, tol: Tolerance) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return abs(float(a) - float(b)) <= tol.atol + tol.rtol * abs(float(a))
    return False


def compare_metadata(
    rec: dict[str, Any], rep: dict[str, Any], tol: Tolerance, errors: Errors
) -> ValueDiff | None:
    """None when the metadata maps match (``ignore_metadata`` keys and ``timestamp`` left out)."""
    skip = {"timestamp", *tol.ignore_metadata}
    a = {k: v for k, v in rec.items() if k not in skip}
    b = {k: v for k, v in rep.items() if k not in skip}
    if a == b:
        return None
    state = [0, 0]
    if _leaf_errors(a, b, tol, errors, state):
        return None
    return ValueDiff("metadata", bad=state[0], total=state[1], changes=deep_changes(a, b, tol))
