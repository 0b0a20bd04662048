"""Record contents above the bytes layer: header, channel definitions, chunk index, footer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dora_replay._records import FORMAT_VERSION, ChunkMeta, pack, unpack

DATAFLOW_PATH_KEY = "dataflow_path"
"""Header metadata: the dataflow file a recording was made from (set by ``dora record``)."""
REPAIRED_KEY = "repaired"
"""Header metadata set by ``dora record repair``: when, and what the repair lost."""
REPAIRED_LOST_KEY = "repaired_lost"
"""Header metadata set by ``dora record repair``: messages lost, ``N+`` for an unknown more."""
TOOL_METADATA_KEYS = frozenset({DATAFLOW_PATH_KEY, REPAIRED_KEY, REPAIRED_LOST_KEY})
"""Metadata keys dora-py writes itself, as opposed to a user's ``--meta``."""


@dataclass(slots=True)
class Header:
    """HEADER record: what the recording is.

    ``start_time_ns``: wall clock at open (ns since the Unix epoch); ``start_monotonic_ns``:
    ``time.monotonic_ns()`` at the same moment; ``part``: 0 for an unsplit file, else 1, 2, ...
    """

    dataflow_yaml: str
    start_time_ns: int
    start_monotonic_ns: int
    metadata: dict[str, str]
    recording_id: str
    part: int = 0
    compression: str = "zstd:1"
    writer: str = "dora-py"
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return pack(
            {
                **self.extra,
                "format_version": self.format_version,
                "dataflow_yaml": self.dataflow_yaml,
                "start_time_ns": self.start_time_ns,
                "start_monotonic_ns": self.start_monotonic_ns,
                "metadata": self.metadata,
                "recording_id": self.recording_id,
                "part": self.part,
                "compression": self.compression,
                "writer": self.writer,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        m = unpack(raw)
        if not isinstance(m, dict):
            raise ValueError("header meta is not a map")
        known = {
            "format_version",
            "dataflow_yaml",
            "start_time_ns",
            "start_monotonic_ns",
            "metadata",
            "recording_id",
            "part",
            "compression",
            "writer",
        }
        return cls(
            dataflow_yaml=str(m.get("dataflow_yaml", "")),
            start_time_ns=int(m.get("start_time_ns", 0)),
            start_monotonic_ns=int(m.get("start_monotonic_ns", 0)),
            metadata={str(k): str(v) for k, v in dict(m.get("metadata") or {}).items()},
            recording_id=str(m.get("recording_id", "")),
            part=int(m.get("part", 0)),
            compression=str(m.get("compression", "")),
            writer=str(m.get("writer", "")),
            format_version=int(m.get("format_version", 0)),
            extra={k: v for k, v in m.items() if k not in known},
        )


@dataclass(frozen=True, slots=True)
class ChannelDef:
    """CHANNEL record: ``name`` is ``node/output``; ``version`` counts type changes from 1.

    ``schema`` is the Arrow IPC schema message of the channel's chunk record batches.
    """

    id: int
    name: str
    version: int
    schema: bytes

    def encode_meta(self) -> bytes:
        return pack({"id": self.id, "name": self.name, "version": self.version})


@dataclass(frozen=True, slots=True)
class ChunkEntry:
    """Where a chunk is and what it holds: one row of the footer index.

    ``offset``/``size``: the whole frame in the file (bytes); ``compressed_size``: its body.
    """

    offset: int
    size: int
    meta: ChunkMeta
    compressed_size: int

    def encode(self) -> list[int]:
        m = self.meta
        return [
            self.offset,
            self.size,
            m.channel_id,
            m.message_count,
            m.start_log_time_ns,
            m.end_log_time_ns,
            m.compression,
            m.uncompressed_size,
            m.data_bytes,
            self.compressed_size,
        ]

    @classmethod
    def decode(cls, row: list[int]) -> ChunkEntry:
        off, size, cid, count, start, end, comp, unc, data_bytes, csize = (int(x) for x in row)
        return cls(off, size, ChunkMeta(cid, count, start, end, comp, unc, data_bytes), csize)


@dataclass(slots=True)
class Footer:
    """FOOTER record body: channel definitions, chunk index, drops and end time."""

    channels: list[ChannelDef]
    chunks: list[ChunkEntry]
    drops: dict[str, int]
    end_time_ns: int
    message_count: int

    def encode(self) -> bytes:
        return pack(
            {
                "channels": [
                    {"id": c.id, "name": c.name, "version": c.version, "schema": c.schema}
                    for c in self.channels
                ],
                "chunks": [e.encode() for e in self.chunks],
                "drops": self.drops,
                "end_time_ns": self.end_time_ns,
                "message_count": self.message_count,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Footer:
        m = unpack(raw)
        return cls(
            channels=[
                ChannelDef(int(c["id"]), str(c["name"]), int(c["version"]), bytes(c["schema"]))
                for c in m["channels"]
            ],
            chunks=[ChunkEntry.decode(r) for r in m["chunks"]],
            drops={str(k): int(v) for k, v in dict(m.get("drops") or {}).items()},
            end_time_ns=int(m.get("end_time_ns", 0)),
            message_count=int(m.get("message_count", 0)),
        )
