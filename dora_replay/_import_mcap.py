"""Import an MCAP file (rosbag2 CDR, JSON, or anything else as raw bytes) into a ``.dora`` file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dora_replay._export_mcap import ARROW_TYPE_KEY, arrow_type_from_token
from dora_replay._jsonify import json_to_array
from dora_replay._pieces import source_seqs
from dora_replay._sink import check_output, replacing
from dora_replay._writer import open_writer


@dataclass(slots=True)
class ImportReport:
    """What was imported: messages per dora channel; ``raw`` channels kept undecoded bytes."""

    output: Path
    messages: int = 0
    channels: dict[str, int] = field(default_factory=dict)
    raw: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    """Topic -> channel, for topics whose channel name would have been another topic's."""
    cut: bool = False
    """The file ends inside a record (a recorder that crashed): what came before it is kept."""
    renumbered: list[str] = field(default_factory=list)
    """Channels whose MCAP sequence numbers did not increase (rosbag2 writes 0): numbered
    0, 1, 2... in log-time order instead, as a replay needs one seq per message."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def channel_name(topic: str) -> str:
    """dora channel for an MCAP topic: ``node/output`` stays; ``/a/b/c`` -> ``a_b/c``;
    ``/cmd_vel`` -> ``ros/cmd_vel``."""
    if not topic.startswith("/") and topic.count("/") == 1 and all(topic.split("/")):
        return topic
    parts = [p for p in topic.split("/") if p]
    if not parts:
        return "ros/unnamed"
    output = _UNSAFE.sub("_", parts[-1])
    node = _UNSAFE.sub("_", "_".join(parts[:-1]) or "ros")
    return f"{node}/{output}"


def _ros_value(v: Any) -> Any:
    slots = getattr(type(v), "__slots__", None)
    if slots and not isinstance(v, bytes | str):
        return {k: _ros_value(getattr(v, k)) for k in slots}
    if isinstance(v, list | tuple):
        return [_ros_value(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


class _Channel:
    """Decodes the messages of one MCAP channel into Arrow arrays."""

    def __init__(self, schema: Any, channel: Any, ros_factory: Any) -> None:
        self.topic = channel.topic
        self.name = channel_name(channel.topic)
        self.type: pa.DataType | None = None
        self.decode_ros = None
        self.raw = False
        self.json = channel.message_encoding == "json"
        token = channel.metadata.get(ARROW_TYPE_KEY)
        if token:
            self.type = arrow_type_from_token(token)
        elif channel.message_encoding == "cdr":
            self.decode_ros = ros_factory.decoder_for(channel.message_encoding, schema)
        if not self.json and self.decode_ros is None:
            self.raw = True
        self.schema_name = schema.name if schema is not None else ""
        self.encoding = channel.message_encoding

    def decode(self, data: bytes) -> tuple[pa.Array, dict[str, Any]]:
        """(array, extra message fields from a dora JSON export)."""
        if self.raw:
            return pa.array(np.frombuffer(data, np.uint8)), {}
        if self.decode_ros is not None:
            value = _ros_value(self.decode_ros(data))
            return self._struct(value), {}
        doc = json.loads(data)
        if self.type is not None and isinstance(doc, dict) and "data" in doc:
            return json_to_array(doc["data"], self.type), doc
        return self._struct(doc), {}

    def _struct(self, value: Any) -> pa.Array:
        if self.type is not None:
            try:
                return pa.array([value], type=self.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                pass
        arr = pa.array([value])
        self.type = arr.type
        return arr


def import_mcap(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
    compression: str = "zstd",
    *,
    overwrite: bool = False,
) -> ImportReport:
    """Convert ``source`` (MCAP) to the recording ``output``. ROS 2 CDR messages (``ros2msg``
    schemas) become one-row struct arrays; JSON messages exported by dora get their Arrow type,
    seq, cause and metadata back; other encodings are kept as raw uint8 arrays with
    ``mcap.encoding``/``mcap.schema`` metadata. ``progress(done, total)`` counts messages.
    Raises ``RecordingError`` if ``output`` exists (unless ``overwrite``) or is ``source``;
    ``output`` is only replaced once the import is complete."""
    check_output(output, overwrite, reading=[source])
    with replacing(output) as tmp:
        return _import(source, output, tmp, progress, compression)


def _import(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    tmp: Path,
    progress: Callable[[int, int], None] | None,
    compression: str,
) -> ImportReport:
    """Import ``source`` into the file ``tmp`` (that becomes ``output``)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    report = ImportReport(Path(output))
    factory = DecoderFactory()
    with Path(source).open("rb") as f:
        reader = make_reader(f)
        try:
            summary = reader.get_summary()
        except Exception:  # noqa: BLE001 - the footer is cut off or damaged: scan the file
            summary = None
        dora_meta: dict[str, str] = {}
        chans: dict[int, _Channel] = {}
        first_ns: int | None = None  # the first message's log time
        if summary is not None:
            stats = summary.statistics
            total = sum(stats.channel_message_counts.values()) if stats else 0
            if stats is not None and stats.message_count:
                first_ns = stats.message_start_time
            for m in reader.iter_metadata():
                if m.name == "dora":
                    dora_meta = dict(m.metadata)
            for cid, channel in summary.channels.items():
                chans[cid] = _Channel(summary.schemas.get(channel.schema_id), channel, factory)
        else:  # no summary: written by a streaming writer, or cut off (a recorder that crashed)
            f.seek(0)
            found, dora_meta, total, first_ns, report.cut = _scan(f)
            chans = {cid: _Channel(schema, ch, factory) for cid, (schema, ch) in found.items()}
        _unique_names(chans, report)
        items = [(c.name, c.schema_name) for c in chans.values()]
        yaml_text = dora_meta.get("dataflow_yaml") or _dataflow_for({n for n, _ in items}, source)
        user = {k[5:]: v for k, v in dora_meta.items() if k.startswith("meta.")}
        user.setdefault("imported_from", str(source))
        f.seek(0)
        if summary is not None:
            messages = ((c.id, m) for _, c, m in make_reader(f).iter_messages(log_time_order=True))
        else:
            messages = _stream_messages(f)
        for c in chans.values():  # what the channel names and Arrow types do not keep
            if c.name != c.topic:
                user[f"mcap.topic.{c.name}"] = c.topic
            if c.decode_ros is not None:
                user[f"mcap.schema.{c.name}"] = c.schema_name
        last_seq: dict[str, int] = {}
        # The recording starts when the exported one did (a dora export says), else at its
        # first message: replay's --start/--end and `dora info` count from there.
        start_ns = int(dora_meta["start_time_ns"]) if "start_time_ns" in dora_meta else first_ns
        with open_writer(
            tmp,
            yaml_text,
            user,
            compression=compression,
            max_buffer_bytes=None,
            start_time_ns=start_ns,
        ) as w:
            for i, (channel_id, message) in enumerate(messages):
                ch = chans[channel_id]
                try:
                    arr, doc = ch.decode(message.data)
                except (ValueError, TypeError, OverflowError, pa.ArrowException) as e:
                    raise ValueError(  # the CLI prefixes the file's name
                        f"message {i + 1} (topic `{ch.topic}`) has a value Arrow cannot hold or "
                        f"that does not match its schema ({type(e).__name__}: {e}); nothing "
                        "was written"
                    ) from None
                meta = doc.get("metadata") or None
                if ch.raw:
                    meta = {"mcap.encoding": ch.encoding, "mcap.schema": ch.schema_name}
                seq = int(doc.get("seq", message.sequence))
                prev = last_seq.get(ch.name, -1)
                if seq <= prev:  # repeated or going back: one seq per message, in order
                    seq = prev + 1
                    if ch.name not in report.renumbered:
                        report.renumbered.append(ch.name)
                last_seq[ch.name] = seq
                w.write(
                    ch.name,
                    arr,
                    log_time_ns=message.log_time,
                    publish_time_ns=message.publish_time,
                    seq=seq,
                    cause=doc.get("cause"),
                    metadata=meta,
                    taken=doc.get("taken"),
                    took=_took(doc.get("took")),
                )
                report.messages += 1
                report.channels[ch.name] = report.channels.get(ch.name, 0) + 1
                if progress is not None and (i % 1000 == 0 or i + 1 == total):
                    progress(i + 1, max(total, i + 1))
        report.raw = sorted({c.name for c in chans.values() if c.raw})
    return report


def _took(items: list[str] | None) -> list[tuple[str, int]] | None:
    """A dora export's ``took`` (``["source#seq", ...]``) back as ``(source, seq)``."""
    return None if items is None else source_seqs(items)


def _stream(f: Any) -> Any:
    """The records of an MCAP file in file order, up to where it ends or stops making sense
    (a file cut off mid-record ends there; ``CUT`` is then the last item)."""
    from mcap.stream_reader import StreamReader

    try:
        yield from StreamReader(f, skip_magic=False).records
    except Exception:  # noqa: BLE001 - EndOfFile, or garbage where the file was cut
        yield CUT


CUT = object()


def _scan(
    f: Any,
) -> tuple[dict[int, tuple[Any, Any]], dict[str, str], int, int | None, bool]:
    """First pass over a file without a summary: its channels (id -> (schema, channel)), the
    ``dora`` metadata, how many messages, the earliest log time, and whether it is cut off."""
    from mcap.records import Channel, Message, Metadata, Schema

    schemas: dict[int, Any] = {}
    channels: dict[int, tuple[Any, Any]] = {}
    meta: dict[str, str] = {}
    count, cut = 0, False
    first: int | None = None
    for r in _stream(f):
        if r is CUT:
            cut = True
        elif isinstance(r, Schema):
            schemas[r.id] = r
        elif isinstance(r, Channel):
            channels[r.id] = (schemas.get(r.schema_id), r)
        elif isinstance(r, Message):
            count += 1
            first = r.log_time if first is None else min(first, r.log_time)
        elif isinstance(r, Metadata) and r.name == "dora":
            meta = dict(r.metadata)
    return channels, meta, count, first, cut


def _stream_messages(f: Any) -> Any:
    """(channel id, message) in file order, up to where the file is cut off."""
    from mcap.records import Message

    for r in _stream(f):
        if isinstance(r, Message):
            yield r.channel_id, r


def _unique_names(chans: dict[int, Any], report: ImportReport) -> None:
    """Give every topic its own channel: a topic whose name maps to a channel another topic
    already has (``/imu/data`` and ``imu/data``) gets ``_2``, ``_3``... on its output."""
    taken: dict[str, str] = {}
    for ch in sorted(chans.values(), key=lambda c: c.topic):
        name, n = ch.name, 1
        while taken.get(name, ch.topic) != ch.topic:
            n += 1
            name = f"{ch.name}_{n}"
        if name != ch.name:
            report.renamed[ch.topic] = name
            ch.name = name
        taken[name] = ch.topic


def _dataflow_for(names: set[str], source: str | os.PathLike[str]) -> str:
    """A dataflow YAML naming each imported node and its outputs (replay replaces them)."""
    nodes: dict[str, list[str]] = {}
    for name in sorted(names):
        node, _, out = name.partition("/")
        nodes.setdefault(node, []).append(out)
    lines = [f"# imported from {Path(source).name} by dora import", "nodes:"]
    for node, outs in nodes.items():
        lines += [f"  - id: {node}", "    path: dynamic", "    outputs:"]
        lines += [f"      - {o}" for o in outs]
    return "\n".join(lines) + "\n"
