"""Bytes layer of the ``.dora`` format: file magic, record frames, CRCs and the fixed chunk meta.

Every record is a *frame* (see ``docs/format.md``)::

    sync "\\xd0REC" | opcode u8 | 3 reserved | meta_len u32 | body_len u64 | meta | head_crc u32
    | body | body_crc u32

``head_crc`` covers opcode..meta, so a frame's lengths and meta can be trusted even when its body is
damaged or cut off; ``body_crc`` covers the body. All integers are little-endian.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

FORMAT_VERSION = 1
"""Major format version written in the header; readers refuse files with a greater one."""

MAGIC = b"\x89DORA\r\n\x1a"
TAIL_MAGIC = b"\x89DORAEND"
SYNC = b"\xd0REC"

OP_HEADER = 0x01
OP_CHANNEL = 0x02
OP_CHUNK = 0x03
OP_DROPS = 0x04
OP_FOOTER = 0x05

COMPRESSION_CODES = {"none": 0, "zstd": 1, "lz4": 2}
COMPRESSION_NAMES = {v: k for k, v in COMPRESSION_CODES.items()}

_PREFIX = struct.Struct("<4sB3xIQ")  # sync, opcode, meta_len, body_len
PREFIX_SIZE = _PREFIX.size  # 20
_U32 = struct.Struct("<I")
_TAIL = struct.Struct("<Q8s")
TAIL_SIZE = _TAIL.size  # 16
MAX_META = 1 << 20
"""Largest meta section a reader accepts (bytes); larger lengths mean a damaged prefix."""

crc32 = zlib.crc32


def frame_head(opcode: int, meta: bytes, body_len: int) -> bytes:
    """Encode everything of a frame that precedes its body (prefix, meta, head CRC)."""
    prefix = _PREFIX.pack(SYNC, opcode, len(meta), body_len)
    crc = crc32(meta, crc32(prefix[4:]))
    return prefix + meta + _U32.pack(crc)


def frame_size(meta_len: int, body_len: int) -> int:
    """Total bytes of a frame with these section lengths."""
    return PREFIX_SIZE + meta_len + 4 + body_len + 4


def encode_frame_parts(opcode: int, meta: bytes, body: bytes | memoryview) -> list[bytes]:
    """The frame as a list of byte strings to write in order (avoids copying a large body)."""
    return [frame_head(opcode, meta, len(body)), body, _U32.pack(crc32(body))]


@dataclass(frozen=True, slots=True)
class FramePrefix:
    """A parsed frame prefix: where the frame is and how long its sections are (bytes)."""

    offset: int
    opcode: int
    meta_len: int
    body_len: int

    @property
    def size(self) -> int:
        return frame_size(self.meta_len, self.body_len)

    @property
    def body_offset(self) -> int:
        return self.offset + PREFIX_SIZE + self.meta_len + 4


def parse_prefix(raw: bytes, offset: int) -> FramePrefix | None:
    """Parse the 20-byte prefix at ``offset``; ``None`` when the sync marker or lengths are wrong."""
    if len(raw) < PREFIX_SIZE:
        return None
    sync, opcode, meta_len, body_len = _PREFIX.unpack_from(raw)
    if sync != SYNC or meta_len > MAX_META:
        return None
    return FramePrefix(offset, opcode, meta_len, body_len)


def check_head(prefix_raw: bytes, meta_and_crc: bytes) -> bool:
    """True when the head CRC matches the prefix and meta (``meta_and_crc`` ends with the CRC)."""
    meta = meta_and_crc[:-4]
    (want,) = _U32.unpack_from(meta_and_crc, len(meta))
    return crc32(meta, crc32(prefix_raw[4:PREFIX_SIZE])) == want


def check_body(body: bytes | memoryview, crc_raw: bytes) -> bool:
    """True when ``body`` matches its 4-byte little-endian CRC."""
    return len(crc_raw) == 4 and crc32(body) == _U32.unpack(crc_raw)[0]


def encode_tail(footer_offset: int) -> bytes:
    """The 16 bytes after the footer frame: footer offset (u64) and ``TAIL_MAGIC``."""
    return _TAIL.pack(footer_offset, TAIL_MAGIC)


def decode_tail(raw: bytes) -> int | None:
    """Footer offset from the last 16 bytes of a file, ``None`` when they are not a tail."""
    if len(raw) != TAIL_SIZE:
        return None
    offset, magic = _TAIL.unpack(raw)
    return offset if magic == TAIL_MAGIC else None


def pack(obj: Any) -> bytes:
    """msgpack encoding used for every meta map (str keys, bin for bytes)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(raw: bytes | memoryview) -> Any:
    """Inverse of :func:`pack`; raises ``ValueError`` on malformed input."""
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"malformed msgpack: {exc}") from exc


_CHUNK_META = struct.Struct("<IIqqB7xQQ")
CHUNK_META_SIZE = _CHUNK_META.size  # 48


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """Fixed meta of a CHUNK frame.

    ``start/end_log_time_ns``: first and last log time in the chunk (ns since the Unix epoch);
    ``uncompressed_size``: bytes of the Arrow IPC message once decompressed; ``data_bytes``: bytes of
    the messages' Arrow data buffers (for statistics).
    """

    channel_id: int
    message_count: int
    start_log_time_ns: int
    end_log_time_ns: int
    compression: int
    uncompressed_size: int
    data_bytes: int

    def encode(self) -> bytes:
        return _CHUNK_META.pack(
            self.channel_id,
            self.message_count,
            self.start_log_time_ns,
            self.end_log_time_ns,
            self.compression,
            self.uncompressed_size,
            self.data_bytes,
        )

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> ChunkMeta:
        if len(raw) < CHUNK_META_SIZE:
            raise ValueError(f"chunk meta is {len(raw)} bytes, expected {CHUNK_META_SIZE}")
        return cls(*_CHUNK_META.unpack_from(raw))
