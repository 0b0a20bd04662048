"""Staging: the writer's flat list of queued messages -> typed column pieces for chunks.

``Writer.write`` appends seven items per message to a per-channel list (one atomic
``list.extend``): data, log_time_ns, publish_time_ns, seq, cause, packed metadata, taken text. The writer thread slices that list
into :class:`Piece` objects here, one per run of messages with the same Arrow type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from dora_replay._chunk import Piece

FIELDS = 7
"""Items per queued message in a channel's pending list."""

ROW_OVERHEAD_BYTES = 40
"""Bytes per message besides its data (times, seq, offsets), for chunk size accounting."""

_PACKER = msgpack.Packer(use_bin_type=True)


def pack_metadata(metadata: dict[str, Any]) -> bytes:
    """msgpack-encode message metadata (values: bool, int, float, str, list, nested).

    Raises ``TypeError`` naming the metadata when a value cannot be recorded losslessly."""
    try:
        return _PACKER.pack(metadata)
    except (TypeError, ValueError, OverflowError) as exc:
        _PACKER.reset()
        raise TypeError(
            f"metadata {metadata!r} cannot be recorded ({exc}); use bool/int/float/str/list values"
        ) from None


def taken_text(
    taken: dict[str, int] | None, took: list[tuple[str, int]] | None = None
) -> str | None:
    """The ``taken`` column's text: the ``{source: seq}`` items as ``source#seq``, space
    separated, in source order; then, with ``took``, `` | `` and its ``source#seq`` items in
    taking order (sources hold no spaces nor ``|``: node ids and outputs cannot)."""
    if taken is None:
        return None
    text = " ".join(f"{src}#{seq}" for src, seq in sorted(taken.items()))
    if took is None:
        return text
    return f"{text} | {' '.join(f'{src}#{seq}' for src, seq in took)}"


def source_seqs(items: Iterable[str]) -> list[tuple[str, int]]:
    """``source#seq`` items as ``(source, seq)``."""
    return [(src, int(seq)) for src, _, seq in (i.rpartition("#") for i in items)]


def parse_taken(text: str | None) -> tuple[dict[str, int] | None, list[tuple[str, int]] | None]:
    """Inverse of :func:`taken_text`: ``(taken, took)``."""
    if text is None:
        return None, None
    last, sep, order = text.partition("|")
    return dict(source_seqs(last.split())), (source_seqs(order.split()) if sep else None)


def to_arrow(data: Any) -> pa.Array:
    """Convert what a node may send (bytes, numpy, list...) exactly as the node API does."""
    from dora_runtime._codec import to_arrow as node_to_arrow

    return node_to_arrow(data)


def make_pieces(items: list[Any]) -> tuple[list[Piece], list[tuple[int, str]]]:
    """Pieces from a pending-list slice, and ``(message_count, reason)`` for messages dropped
    because they cannot be recorded (data the node API would refuse, bad times or seq)."""
    datas = items[0::FIELDS]
    bad: list[tuple[int, str]] = []
    try:
        runs = [(0, len(datas), pa.concat_arrays(datas))]
    except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            datas = [to_arrow(d) for d in datas]
            runs = _typed_runs(datas)
        except Exception as exc:  # a value no node could have sent
            return [], [(len(datas), str(exc))]
    pieces = []
    for lo, hi, values in runs:
        part = items[lo * FIELDS : hi * FIELDS]
        causes = part[4::FIELDS]
        metas = part[5::FIELDS]
        takens = part[6::FIELDS]
        n = hi - lo
        try:
            pieces.append(
                Piece(
                    data_type=values.type,
                    values=values,
                    lengths=np.fromiter(map(len, datas[lo:hi]), np.int64, n),
                    log=np.array(part[1::FIELDS], dtype=np.int64),
                    pub=np.array(part[2::FIELDS], dtype=np.int64),
                    seq=np.array(part[3::FIELDS], dtype=np.uint64),
                    causes=None if causes.count(None) == n else causes,
                    metas=None if metas.count(None) == n else metas,
                    takens=None if takens.count(None) == n else takens,
                    nbytes=values.nbytes + ROW_OVERHEAD_BYTES * n,
                )
            )
        except (TypeError, ValueError, OverflowError) as exc:
            bad.append((n, f"bad times or seq ({exc})"))
    return pieces, bad


def _typed_runs(arrays: list[pa.Array]) -> list[tuple[int, int, pa.Array]]:
    """Split consecutive arrays into runs of one type, each concatenated."""
    runs: list[tuple[int, int, pa.Array]] = []
    lo = 0
    for i in range(1, len(arrays) + 1):
        if i == len(arrays) or arrays[i].type != arrays[lo].type:
            runs.append((lo, i, pa.concat_arrays(arrays[lo:i])))
            lo = i
    return runs
