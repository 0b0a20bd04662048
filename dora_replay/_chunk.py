"""Chunk layer: many messages of one channel as one Arrow record batch, compressed.

A chunk body is an Arrow IPC stream holding one record batch (with its dictionaries, if any),
compressed with the chunk's codec. Columns, one row per message:
``log_time_ns`` int64, ``publish_time_ns`` int64, ``seq`` uint64, ``cause`` utf8 (nullable),
``metadata`` binary (msgpack map, nullable), ``data`` large_list<item: T> (the message's array),
``taken`` utf8 (nullable; ``source#seq`` items: the last message the sender had taken on each
input). Files written before ``taken`` existed have the first six columns only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import zstandard

from dora_replay._records import COMPRESSION_CODES

COLUMNS = ("log_time_ns", "publish_time_ns", "seq", "cause", "metadata", "data", "taken")


def chunk_schema(data_type: pa.DataType) -> pa.Schema:
    """Record batch schema of a channel whose messages are arrays of ``data_type``."""
    return pa.schema(
        [
            pa.field("log_time_ns", pa.int64(), nullable=False),
            pa.field("publish_time_ns", pa.int64(), nullable=False),
            pa.field("seq", pa.uint64(), nullable=False),
            pa.field("cause", pa.string()),
            pa.field("metadata", pa.binary()),
            pa.field("data", pa.large_list(data_type), nullable=False),
            pa.field("taken", pa.string()),
        ]
    )


def data_type_of(schema: pa.Schema) -> pa.DataType:
    """The message array type of a chunk schema."""
    return schema.field("data").type.value_type


def parse_compression(spec: str) -> tuple[str, int]:
    """``"zstd"``, ``"zstd:LEVEL"``, ``"lz4"`` or ``"none"`` -> (codec, level). zstd defaults to 1."""
    name, _, level = spec.partition(":")
    if name not in COMPRESSION_CODES:
        raise ValueError(f"compression {spec!r} is not one of: zstd, zstd:LEVEL, lz4, none")
    if level and name != "zstd":
        raise ValueError(f"compression {spec!r}: only zstd takes a level")
    try:
        lvl = int(level) if level else 1
    except ValueError:
        raise ValueError(f"compression {spec!r}: level must be an integer, e.g. zstd:3") from None
    if name == "zstd" and not -7 <= lvl <= 22:
        raise ValueError(f"compression {spec!r}: zstd level must be in -7..22")
    if name == "lz4":
        import lz4.frame  # noqa: F401  (fail at open time, not in the writer thread)
    return name, lvl


class Compressor:
    """Compresses chunk bodies; safe to call from several threads at once (one zstd context per
    thread)."""

    def __init__(self, codec: str, level: int) -> None:
        self.codec = codec
        self.level = level
        self.code = COMPRESSION_CODES[codec]
        self._local = threading.local()

    def compress(self, raw: Any) -> bytes | memoryview:
        """Compress a bytes-like body (``raw`` is returned as a memoryview for ``none``)."""
        if self.codec == "zstd":
            ctx = getattr(self._local, "zstd", None)
            if ctx is None:
                ctx = self._local.zstd = zstandard.ZstdCompressor(level=self.level)
            return ctx.compress(raw)
        if self.codec == "lz4":
            import lz4.frame

            return lz4.frame.compress(raw)
        return memoryview(raw)


_DECOMPRESSOR = zstandard.ZstdDecompressor()


def decompress(code: int, body: bytes, size: int) -> bytes:
    """Inverse of :meth:`Compressor.compress`; ``size`` is the expected output (bytes)."""
    if code == 1:
        out = _DECOMPRESSOR.decompress(body, max_output_size=size)
    elif code == 2:
        import lz4.frame

        out = lz4.frame.decompress(body)
    elif code == 0:
        out = body
    else:
        raise ValueError(f"unknown compression code {code}")
    if len(out) != size:
        raise ValueError(f"chunk decompressed to {len(out)} bytes, expected {size}")
    return out


@dataclass(slots=True)
class Piece:
    """Consecutive messages of one channel and one data type, columns ready for a record batch."""

    data_type: pa.DataType
    values: pa.Array
    lengths: np.ndarray
    log: np.ndarray
    pub: np.ndarray
    seq: np.ndarray
    causes: list[Any] | None
    metas: list[Any] | None
    nbytes: int
    takens: list[Any] | None = None

    @property
    def count(self) -> int:
        return len(self.lengths)


def build_batch(pieces: list[Piece], schema: pa.Schema) -> pa.RecordBatch:
    """One record batch from pieces of the same type, rows sorted by log time (stable)."""
    n = sum(p.count for p in pieces)
    one = len(pieces) == 1
    values = pieces[0].values if one else pa.concat_arrays([p.values for p in pieces])
    lengths = pieces[0].lengths if one else np.concatenate([p.lengths for p in pieces])
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    log = pieces[0].log if one else np.concatenate([p.log for p in pieces])
    pub = pieces[0].pub if one else np.concatenate([p.pub for p in pieces])
    seq = pieces[0].seq if one else np.concatenate([p.seq for p in pieces])
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(log),
            pa.array(pub),
            pa.array(seq),
            _optional_column(pieces, "causes", pa.string(), n),
            _optional_column(pieces, "metas", pa.binary(), n),
            pa.LargeListArray.from_arrays(pa.array(offsets), values, type=schema.field(5).type),
            _optional_column(pieces, "takens", pa.string(), n),
        ][: len(schema)],  # a schema of the six columns before ``taken``: a repair keeps it
        schema=schema,
    )
    if n > 1 and bool(np.any(log[1:] < log[:-1])):
        batch = batch.take(pa.array(np.argsort(log, kind="stable")))
    return batch


def _optional_column(pieces: list[Piece], attr: str, typ: pa.DataType, n: int) -> pa.Array:
    if all(getattr(p, attr) is None for p in pieces):
        return pa.nulls(n, typ)
    rows: list[Any] = []
    for p in pieces:
        col = getattr(p, attr)
        rows.extend(col if col is not None else [None] * p.count)
    return pa.array(rows, typ)


def encode_batch(batch: pa.RecordBatch) -> pa.Buffer:
    """Arrow IPC stream (schema, dictionaries, one record batch, end marker) of ``batch``: what a
    chunk body holds before compression."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue()


def decode_batch(raw: bytes, schema: pa.Schema) -> pa.RecordBatch:
    """Record batch from a decompressed chunk body; raises ``pa.ArrowInvalid`` if malformed or if
    its schema differs from the channel's ``schema``."""
    reader = pa.ipc.open_stream(pa.py_buffer(raw))
    if not reader.schema.equals(schema):
        raise pa.ArrowInvalid(f"chunk schema {reader.schema} differs from its channel's")
    return reader.read_next_batch()
