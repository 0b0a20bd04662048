"""Part reader: one ``.dora`` file -> header, channels, chunk index, problems.

Uses the footer when the tail and footer check out, otherwise scans frame by frame (reading only
frame heads and channel schemas). Never raises on damage after the header: every damaged or missing
range becomes a :class:`Problem`, and reading goes on with the next intact frame. A damaged record
whose content another copy still holds (a CHANNEL record: the footer's copy, or the schema inside
its chunks) is restored from that copy; such damage, which loses no message, is listed in
``record_damage`` (and in ``problems`` once :meth:`PartFile.check_records` ran, as ``verify``
does).
"""

from __future__ import annotations

import dataclasses
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
    (a damaged frame head); ``0`` for damage that lost no message (a damaged record restored
    from another copy, unreadable bytes where the footer index lists no chunk); ``lost_bytes``
    is the size of the skipped range.

    ``kind``: ``crc`` (a chunk fails its CRC), ``truncated`` (the file ends inside a frame),
    ``garbage`` (unreadable bytes skipped), ``bad-chunk`` (a chunk passes its CRC but cannot be
    decoded, or its schema cannot), ``no-channel`` (a chunk whose channel record is lost with
    no intact copy left), ``record`` (a damaged CHANNEL record)."""

    path: Path
    offset: int
    kind: str
    message: str
    lost_messages: int | None = 0
    lost_bytes: int = 0
    channel: str | None = None

    def __str__(self) -> str:
        return f"{self.path}@{self.offset}: {self.message}"


class PartFile:
    """One opened file. ``bytes_read`` counts every byte read from it.

    ``has_footer``: the index was read from the footer (the tail points at it and it checks
    out). ``footer_damaged``: the file was closed with a footer, but the footer or the 16-byte
    end marker after it is damaged or cut off, so the index was rebuilt by scanning;
    ``end_marker_damaged``: only the end marker is (the FOOTER frame is intact, so nothing in
    the file is unaccounted for). ``footer``: the intact footer, however found (also when the
    file is scanned). ``force_scan``: scan the file even when its footer is intact (repair).
    """

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
        #: damage that lost no message (a record restored from another copy); ``check_records``
        #: adds it to ``problems``
        self.record_damage: list[Problem] = []
        self.channels: dict[int, ChannelDef] = {}
        #: channels whose CHANNEL record is damaged or missing, restored from another copy
        self.restored_channels: list[str] = []
        #: names of channels whose record is damaged but whose meta could still be read
        self.lost_channel_names: dict[int, str] = {}
        self.chunks: list[ChunkEntry] = []
        self.drops: dict[str, int] = {}
        self.end_time_ns: int | None = None
        self.has_footer = False
        self.footer_damaged = False
        self.end_marker_damaged = False
        self.footer: Footer | None = None
        self._footer_at = -1  # where the tail says the footer is
        self._tail_ok = False  # the tail points at an intact footer
        self._damaged_channels: dict[int, tuple[str, int, Problem]] = {}
        self._records_checked = False
        try:
            self.header, pos = self._read_header()
            footer = self._load_footer()
            if footer is not None and not force_scan:
                self._use_footer(footer)
            else:
                self._scan(pos)
                self._reconcile()
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
            hint = ""
            if self.path.suffix in (".yml", ".yaml"):
                hint = (
                    ": it looks like a dataflow file; record it with "
                    f"`dora record {self.path} -o run.dora`"
                )
            elif head[:4] == b"\x89MCA":
                hint = f": it looks like an MCAP file; `dora import {self.path} -o run.dora` converts it"
            raise RecordingCorruptError(
                f"{self.path}: not a .dora recording (it does not start as one){hint}"
            )
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

    def _load_footer(self) -> Footer | None:
        """The footer the tail points at, when both check out (also kept in ``footer``)."""
        if self.size < TAIL_SIZE:
            return None
        offset = decode_tail(self.pread(TAIL_SIZE, self.size - TAIL_SIZE))
        if offset is None or offset >= self.size - TAIL_SIZE:
            return None
        self._footer_at = offset
        footer = self._decode_footer(self._read_frame(offset, OP_FOOTER))
        if footer is None:
            self.footer_damaged = True
        self.footer = footer
        self._tail_ok = footer is not None
        return footer

    @staticmethod
    def _decode_footer(got: tuple[bytes, bytes] | None) -> Footer | None:
        if got is None:
            return None
        try:
            return Footer.decode(got[1])
        except (ValueError, TypeError, KeyError, IndexError):
            return None

    def _use_footer(self, footer: Footer) -> None:
        self.channels = {c.id: c for c in footer.channels}
        self.chunks = footer.chunks
        self.drops = footer.drops
        self.end_time_ns = footer.end_time_ns
        self.has_footer = True

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
            if any(p.offset == entry.offset and p.kind == "crc" for p in self.problems):
                return None  # read before: reported once
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

    def check_records(self) -> None:
        """Add to ``problems`` the damage that lost no message (``record_damage``), once. A
        part opened by its footer never reads its CHANNEL records (the footer holds copies),
        so it is scanned here as a footer-less reader would scan it."""
        if self._records_checked:
            return
        self._records_checked = True
        if self.has_footer:
            scan = PartFile(self.path, force_scan=True)
            try:
                self.record_damage = scan.record_damage
            finally:
                scan.close()
                self.bytes_read += scan.bytes_read
        self.problems.extend(self.record_damage)

    def _scan(self, pos: int) -> None:
        while pos < self.size:
            raw = self.pread(PREFIX_SIZE, pos)
            if len(raw) < PREFIX_SIZE:
                if raw[: len(SYNC) + 1] == SYNC + bytes([OP_FOOTER]):
                    self.footer_damaged = True  # a cut-off footer loses no message
                elif len(raw) != TAIL_SIZE or decode_tail(raw) is None:
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
                    if pre.opcode == OP_FOOTER:  # a cut-off footer loses no message
                        self.footer_damaged = True
                    else:
                        self._lost(pos, self.size - pos, "truncated", "file ends inside a frame")
                    return
                meta_crc = self.pread(pre.meta_len + 4, pos + PREFIX_SIZE)
                if check_head(raw, meta_crc):
                    pos = self._scanned(pre, meta_crc[:-4])
                    continue
            if self.footer_damaged and pos == self._footer_at:
                # the frame the tail points at, the last one: it holds the index, no message
                pos = self.size - TAIL_SIZE
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
                self.footer_damaged = True
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
        elif pre.opcode == OP_FOOTER:
            if not self._tail_ok:  # else the footer the tail points at is the one
                footer = self._decode_footer(self._read_frame(pre.offset, OP_FOOTER))
                if footer is None:
                    self.footer_damaged = True
                self.footer = footer
            if self.size - end <= TAIL_SIZE:
                # the last frame: what follows is its end marker, or what is left of it
                if decode_tail(self.pread(TAIL_SIZE, end)) != pre.offset:
                    self.footer_damaged = True
                    self.end_marker_damaged = self.footer is not None
                return self.size
        return end

    def _scanned_channel(self, pre: FramePrefix, meta: bytes) -> None:
        body_and_crc = self.pread(pre.body_len + 4, pre.body_offset)
        try:
            m = unpack(meta)
            cid, name, version = int(m["id"]), str(m["name"]), int(m["version"])
        except (ValueError, KeyError, TypeError) as exc:
            self._lost(pre.offset, pre.size, "record", f"channel record damaged ({exc})", None)
            return
        if not check_body(body_and_crc[:-4], body_and_crc[-4:]):
            problem = Problem(
                self.path,
                pre.offset,
                "record",
                f"channel record of {name} (id {cid}) is damaged (its schema fails its CRC)",
                0,
                pre.size,
                name,
            )
            self._damaged_channels[cid] = (name, version, problem)
            self.lost_channel_names[cid] = name
            return
        self.channels[cid] = ChannelDef(cid, name, version, body_and_crc[:-4])

    def _reconcile(self) -> None:
        """After a scan: take drops and end time from an intact footer, count what unreadable
        bytes held by its index, and restore damaged channel records from an intact copy."""
        footer = self.footer
        if footer is not None:
            self.drops = dict(footer.drops)
            self.end_time_ns = footer.end_time_ns
            self._count_by_index(footer)
        self._restore_channels(footer)

    def _count_by_index(self, footer: Footer) -> None:
        """Unreadable bytes hold an unknown number of messages, except in a file whose footer
        is intact: its index lists every chunk, so the count is known (often none: a damaged
        CHANNEL or DROPS record)."""
        found = {e.offset for e in self.chunks}
        kept: list[Problem] = []
        for p in self.problems:
            if p.lost_messages is not None or p.kind != "garbage":
                kept.append(p)
                continue
            end = p.offset + p.lost_bytes
            inside = [e for e in footer.chunks if p.offset <= e.offset < end]
            inside = [e for e in inside if e.offset not in found]
            if not inside:
                self.record_damage.append(
                    dataclasses.replace(
                        p,
                        message="unreadable bytes skipped; the footer index lists no chunk "
                        "there (a damaged channel or drops record)",
                        lost_messages=0,
                    )
                )
                continue
            n = sum(e.meta.message_count for e in inside)
            names = sorted({self._name(e.meta.channel_id, footer) for e in inside})
            kept.append(
                dataclasses.replace(
                    p,
                    message=f"unreadable bytes skipped: {len(inside)} chunk(s) of "
                    f"{', '.join(names)} ({n} messages, by the footer index)",
                    lost_messages=n,
                    channel=names[0] if len(names) == 1 else None,
                )
            )
        self.problems = kept

    def _restore_channels(self, footer: Footer | None) -> None:
        """Channels that chunks use (or whose record is damaged) but no intact CHANNEL record
        defines: from the footer's copy, else (the damaged record's meta still names it) from
        the Arrow schema every chunk holds. Chunks whose channel stays unknown are left for
        the reader to report as lost."""
        copies = {c.id: c for c in footer.channels} if footer is not None else {}
        used = {e.meta.channel_id for e in self.chunks}
        unreadable: dict[int, list[str]] = {}  # record_damage index -> channels restored
        for cid in sorted((used | set(self._damaged_channels)) - set(self.channels)):
            ch, source = copies.get(cid), "the copy in the footer"
            damaged = self._damaged_channels.get(cid)
            if ch is None and damaged is not None:
                name, version, _ = damaged
                schema = self._schema_from_chunks(cid)
                if schema is not None:
                    ch, source = ChannelDef(cid, name, version, schema), "the schema in its chunks"
            if ch is not None:
                self.channels[cid] = ch
                self.lost_channel_names.pop(cid, None)
                self.restored_channels.append(ch.name)
            if damaged is None:
                if ch is not None:  # its record was in unreadable bytes before its first chunk
                    self._restored_unread(ch, unreadable)
                continue
            problem = damaged[2]
            if ch is not None:
                why = f"restored from {source}: no message lost"
            elif cid not in used:
                why = "no chunk uses it: no message lost"
            else:
                why = "no intact copy is left: its chunks cannot be read"
                self.problems.append(
                    dataclasses.replace(problem, message=f"{problem.message}; {why}")
                )
                continue
            self.record_damage.append(
                dataclasses.replace(problem, message=f"{problem.message}; {why}")
            )
        for i, names in unreadable.items():
            p = self.record_damage[i]
            self.record_damage[i] = dataclasses.replace(
                p,
                message=f"unreadable bytes skipped: the channel record of {', '.join(names)} "
                "(the footer index lists no chunk there); restored from the copy in the "
                "footer: no message lost",
                channel=names[0] if len(names) == 1 else None,
            )

    def _restored_unread(self, ch: ChannelDef, unreadable: dict[int, list[str]]) -> None:
        """Note that ``ch``, which no intact CHANNEL record defines, was restored from the
        footer: on the unreadable bytes nearest before its first chunk (where the writer put
        its record), else as damage of its own."""
        first = min(e.offset for e in self.chunks if e.meta.channel_id == ch.id)
        before = [
            i for i, p in enumerate(self.record_damage) if p.kind == "garbage" and p.offset < first
        ]
        if before:
            i = max(before, key=lambda i: self.record_damage[i].offset)
            unreadable.setdefault(i, []).append(ch.name)
            return
        self.record_damage.append(
            Problem(
                self.path,
                first,
                "record",
                f"no intact channel record of {ch.name} (id {ch.id}) before its first chunk; "
                "restored from the copy in the footer: no message lost",
                0,
                0,
                ch.name,
            )
        )

    def _schema_from_chunks(self, channel_id: int) -> bytes | None:
        """The channel's schema message, from the first of its chunks that reads (a chunk body
        is an Arrow IPC stream, which begins with the schema); ``None`` when none does."""
        import pyarrow as pa

        from dora_replay._chunk import COLUMNS, decompress

        for e in self.chunks:
            if e.meta.channel_id != channel_id:
                continue
            got = self._read_frame(e.offset, OP_CHUNK)
            if got is None:
                continue
            try:
                raw = decompress(e.meta.compression, got[1], e.meta.uncompressed_size)
                schema = pa.ipc.open_stream(pa.py_buffer(raw)).schema
            except Exception:  # zstd, lz4 and Arrow raise unrelated types
                continue
            if tuple(schema.names) in (COLUMNS, COLUMNS[:6]):  # six: before ``taken``
                return schema.serialize().to_pybytes()
        return None

    def _name(self, channel_id: int, footer: Footer | None = None) -> str:
        ch = self.channels.get(channel_id)
        if ch is None and footer is not None:
            ch = next((c for c in footer.channels if c.id == channel_id), None)
        if ch is not None:
            return ch.name
        return self.lost_channel_names.get(channel_id, f"channel #{channel_id}")

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
