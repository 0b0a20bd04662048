"""Part reader: one ``.dora`` file -> header, channels, chunk index, problems.

Uses the footer when the tail and footer check out, otherwise scans frame by frame (reading only
frame heads and channel schemas). Never raises on damage after the header: every damaged or missing
range becomes a :class:`Problem`, and reading goes on with the next intact frame.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from dora_replay._index import ChannelDef, ChunkEntry, Footer, Header
from dora_replay._records import (
    CHUNK_META_SIZE,
    FORMAT_VERSION,
    MAGIC,
    OP_CHANNEL,
    OP_CHUNK,
    OP_DROPS,
    OP_FOOTER,
    OP_HEADER,
    PREFIX_SIZE,
    SYNC,
    TAIL_SIZE,
    ChunkMeta,
    FramePrefix,
    check_body,
    check_head,
    decode_tail,
    parse_prefix,
    unpack,
)
from dora_replay.errors import RecordingCorruptError, RecordingError, RecordingNotFoundError

_RESYNC_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Problem:
    """Something lost or damaged. ``lost_messages`` is ``None`` when the count is unknown
    (a damaged frame head); ``lost_bytes`` is the size of the skipped range."""

    path: Path
    offset: int
    kind: str  # "crc", "truncated", "garbage", "no-footer", "bad-chunk"
    message: str
    lost_messages: int | None = 0
    lost_bytes: int = 0
    channel: str | None = None

    def __str__(self) -> str:
        return f"{self.path}@{self.offset}: {self.message}"


class PartFile:
    """One opened file. ``bytes_read`` counts every byte read from it."""

    def __init__(self, path: str | os.PathLike[str], force_scan: bool = False) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise RecordingNotFoundError(f"{self.path}: no such recording") from None
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot open ({exc.strerror})") from None
        st = os.fstat(self._fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(self._fd)
            raise RecordingCorruptError(f"{self.path}: is a folder, not a .dora recording")
        self.size = st.st_size
        self.bytes_read = 0
        self.problems: list[Problem] = []
        self.channels: dict[int, ChannelDef] = {}
        self.chunks: list[ChunkEntry] = []
        self.drops: dict[str, int] = {}
        self.end_time_ns: int | None = None
        self.has_footer = False
        self.footer_damaged = False  # the tail points at a footer that fails its checks
        self._footer_at = -1
        try:
            self.header, pos = self._read_header()
            if force_scan or not self._load_footer():
                self._scan(pos)
        except BaseException:
            self.close()
            raise

    def pread(self, n: int, offset: int) -> bytes:
        """Read up to ``n`` bytes at ``offset`` (fewer at the end of the file)."""
        raw = os.pread(self._fd, n, offset)
        self.bytes_read += len(raw)
        return raw

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _corrupt(self, what: str) -> RecordingCorruptError:
        return RecordingCorruptError(
            f"{self.path}: {what}; it holds no readable messages (a .dora file begins with its "
            f"header, written when recording starts)"
        )

    def _read_header(self) -> tuple[Header, int]:
        head = self.pread(len(MAGIC) + PREFIX_SIZE, 0)
        if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            if len(head) < len(MAGIC) and MAGIC.startswith(head):
                raise self._corrupt(f"truncated inside the file magic ({self.size} bytes)")
            raise RecordingCorruptError(f"{self.path}: not a .dora recording (bad magic)")
        pre = parse_prefix(head[len(MAGIC) :], len(MAGIC))
        if pre is None or pre.opcode != OP_HEADER:
            if len(head) < len(MAGIC) + PREFIX_SIZE:
                raise self._corrupt(f"truncated inside the header ({self.size} bytes)")
            raise self._corrupt("the header frame is damaged")
        rest = self.pread(pre.meta_len + 4, len(MAGIC) + PREFIX_SIZE)
        if len(rest) < pre.meta_len + 4 or pre.offset + pre.size > self.size:
            raise self._corrupt(f"truncated inside the header ({self.size} bytes)")
        if not check_head(head[len(MAGIC) :], rest):
            raise self._corrupt("the header frame fails its CRC")
        try:
            header = Header.decode(rest[:-4])
        except (ValueError, TypeError, KeyError) as exc:
            raise self._corrupt(f"the header cannot be decoded ({exc})") from None
        if header.format_version > FORMAT_VERSION:
            raise RecordingError(
                f"{self.path}: format version {header.format_version} is newer than this reader "
                f"({FORMAT_VERSION}); upgrade dora-py"
            )
        return header, pre.offset + pre.size

    def _load_footer(self) -> bool:
        if self.size < TAIL_SIZE:
            return False
        offset = decode_tail(self.pread(TAIL_SIZE, self.size - TAIL_SIZE))
        if offset is None or offset >= self.size - TAIL_SIZE:
            return False
        self._footer_at = offset
        got = self._read_frame(offset, OP_FOOTER)
        if got is None:
            self.footer_damaged = True
            return False
        try:
            footer = Footer.decode(got[1])
        except (ValueError, TypeError, KeyError, IndexError):
            self.footer_damaged = True
            return False
        self.channels = {c.id: c for c in footer.channels}
        self.chunks = footer.chunks
        self.drops = footer.drops
        self.end_time_ns = footer.end_time_ns
        self.has_footer = True
        return True

    def _read_frame(self, offset: int, opcode: int) -> tuple[bytes, bytes] | None:
        """(meta, body) of an intact frame of ``opcode`` at ``offset``, else ``None``."""
        raw = self.pread(PREFIX_SIZE, offset)
        pre = parse_prefix(raw, offset)
        if pre is None or pre.opcode != opcode or offset + pre.size > self.size:
            return None
        rest = self.pread(pre.size - PREFIX_SIZE, offset + PREFIX_SIZE)
        meta_crc = rest[: pre.meta_len + 4]
        body = rest[pre.meta_len + 4 : -4]
        if not check_head(raw, meta_crc) or not check_body(body, rest[-4:]):
            return None
        return meta_crc[:-4], body

    def read_chunk(self, entry: ChunkEntry, channel: str | None = None) -> bytes | None:
        """The compressed body of a chunk, CRC-checked; ``None`` (and a problem) when damaged."""
        got = self._read_frame(entry.offset, OP_CHUNK)
        if got is None:
            m = entry.meta
            self.problems.append(
                Problem(
                    self.path,
                    entry.offset,
                    "crc",
                    f"chunk of {channel or m.channel_id} ({m.message_count} messages, "
                    f"log time {m.start_log_time_ns}..{m.end_log_time_ns} ns) fails its CRC; "
                    "skipped",
                    m.message_count,
                    entry.size,
                    channel,
                )
            )
            return None
        return got[1]

    def _scan(self, pos: int) -> None:
        while pos < self.size:
            if self.footer_damaged and pos == self._footer_at:
                # the last frame, which the tail points at: it holds the index, no message
                pos = self.size - TAIL_SIZE
                continue
            raw = self.pread(PREFIX_SIZE, pos)
            if len(raw) < PREFIX_SIZE:
                if len(raw) != TAIL_SIZE or decode_tail(raw) is None:
                    self._lost(pos, len(raw), "truncated", "file ends inside a frame head", None)
                return
            pre = parse_prefix(raw, pos)
            if pre is not None:
                if pos + PREFIX_SIZE + pre.meta_len + 4 > self.size:
                    # The file ends inside this head, or its length field is damaged: only
                    # the first if no valid frame follows.
                    nxt = self._resync(pos + 1)
                    if nxt < self.size:
                        self._lost(pos, nxt - pos, "garbage", "unreadable bytes skipped", None)
                        pos = nxt
                        continue
                    if pre.opcode != OP_FOOTER:  # a cut-off footer loses no message
                        self._lost(pos, self.size - pos, "truncated", "file ends inside a frame")
                    return
                meta_crc = self.pread(pre.meta_len + 4, pos + PREFIX_SIZE)
                if check_head(raw, meta_crc):
                    pos = self._scanned(pre, meta_crc[:-4])
                    continue
            if decode_tail(raw[:TAIL_SIZE]) is not None:
                pos += TAIL_SIZE
                continue
            nxt = self._resync(pos + 1)
            self._lost(pos, nxt - pos, "garbage", "unreadable bytes skipped", None)
            pos = nxt

    def _scanned(self, pre: FramePrefix, meta: bytes) -> int:
        end = pre.offset + pre.size
        if end > self.size:
            if pre.opcode == OP_FOOTER:  # a cut-off footer loses no message
                return self.size
            lost = name = None
            what = "file ends inside a frame"
            if pre.opcode == OP_CHUNK and len(meta) >= CHUNK_META_SIZE:
                m = ChunkMeta.decode(meta)
                lost = m.message_count
                name = self._name(m.channel_id)
                what = f"file ends inside a chunk of {name} ({lost} messages)"
            self._lost(pre.offset, self.size - pre.offset, "truncated", what, lost, name)
            return self.size
        if pre.opcode == OP_CHUNK:
            try:
                m = ChunkMeta.decode(meta)
            except ValueError:
                self._lost(pre.offset, pre.size, "bad-chunk", "malformed chunk meta", None)
                return end
            self.chunks.append(ChunkEntry(pre.offset, pre.size, m, pre.body_len))
        elif pre.opcode == OP_CHANNEL:
            self._scanned_channel(pre, meta)
        elif pre.opcode == OP_DROPS:
            try:
                self.drops = {str(k): int(v) for k, v in unpack(meta)["drops"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        return end

    def _scanned_channel(self, pre: FramePrefix, meta: bytes) -> None:
        body_and_crc = self.pread(pre.body_len + 4, pre.body_offset)
        try:
            if not check_body(body_and_crc[:-4], body_and_crc[-4:]):
                raise ValueError("CRC mismatch")
            m = unpack(meta)
            ch = ChannelDef(int(m["id"]), str(m["name"]), int(m["version"]), body_and_crc[:-4])
        except (ValueError, KeyError, TypeError) as exc:
            self._lost(pre.offset, pre.size, "crc", f"channel record damaged ({exc})", None)
            return
        self.channels[ch.id] = ch

    def _name(self, channel_id: int) -> str:
        ch = self.channels.get(channel_id)
        return ch.name if ch else f"channel #{channel_id}"

    def _lost(
        self,
        offset: int,
        n: int,
        kind: str,
        what: str,
        messages: int | None = None,
        channel: str | None = None,
    ) -> None:
        self.problems.append(Problem(self.path, offset, kind, what, messages, n, channel))

    def _resync(self, pos: int) -> int:
        """Offset of the next frame whose head checks out (or the end of the file)."""
        while pos < self.size:
            block = self.pread(_RESYNC_BLOCK + len(SYNC), pos)
            i = block.find(SYNC)
            while i >= 0:
                cand = pos + i
                raw = self.pread(PREFIX_SIZE, cand)
                pre = parse_prefix(raw, cand)
                if pre is not None:
                    meta_crc = self.pread(pre.meta_len + 4, cand + PREFIX_SIZE)
                    if len(meta_crc) == pre.meta_len + 4 and check_head(raw, meta_crc):
                        return cand
                i = block.find(SYNC, i + 1)
            pos += _RESYNC_BLOCK
        return self.size
