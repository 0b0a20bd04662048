"""Export a recording to MCAP with JSON-encoded messages (Foxglove Studio shows them)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from dora_replay._jsonify import (
    RAW_IMAGE_SCHEMA_NAME,
    array_to_json,
    data_form,
    foxglove_readable,
    message_schema,
    raw_image,
    raw_image_schema,
)
from dora_replay._recording import Recording
from dora_replay._recording import open as open_recording
from dora_replay._sink import check_output, replacing
from dora_replay.info import Source, damage_warning

ARROW_TYPE_KEY = "dora.arrow_type"
"""MCAP channel metadata key: base64 Arrow IPC schema with one field ``data`` of the array type."""


def arrow_type_token(t: pa.DataType) -> str:
    return base64.b64encode(pa.schema([pa.field("data", t)]).serialize().to_pybytes()).decode()


def arrow_type_from_token(token: str) -> pa.DataType:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(token))).field("data").type


def export_mcap(
    source: Source,
    output: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Write every readable message of ``source`` to the MCAP file ``output``; returns the
    number of messages written.

    One MCAP channel per dora channel and Arrow type (topic = ``node/output``), JSON Schema
    schemas, log/publish times kept, the dataflow and metadata in an MCAP metadata record
    named ``dora``. ``progress(done, total)`` counts messages; ``warn`` gets a line for each
    file of another recording left out (see ``Recording.warnings``), and at
    the end one line saying how many messages could not be read if ``source`` is damaged
    (see :func:`~dora_replay.info.damage_warning`). Raises
    ``RecordingError`` if ``output`` exists (unless ``overwrite``) or is a file being read;
    ``output`` is only replaced once the export is complete."""
    from mcap.writer import CompressionType, Writer

    with open_recording(source) as rec:
        check_output(output, overwrite, reading=rec.paths)
        for line in rec.warnings if warn is not None else ():
            warn(line)
        with replacing(output) as tmp, tmp.open("wb") as f:
            writer = Writer(f, compression=CompressionType.ZSTD)
            written = _write(rec, writer, progress, warn or (lambda _line: None))
        damage = damage_warning(rec)
        if damage is not None and warn is not None:
            warn(damage)
        return written


def _write(
    rec: Recording,
    w: Any,
    progress: Callable[[int, int], None] | None,
    note: Callable[[str], None],
) -> int:
    """Write ``rec`` with the MCAP writer ``w``; returns how many messages were written (fewer
    than ``rec.message_count`` when chunks cannot be read). A channel whose values Foxglove's
    JSON Schema reader cannot describe is written without a schema, with a ``note``."""
    w.start(profile="", library="dora-py")
    meta = {f"meta.{k}": v for k, v in rec.metadata.items()}
    meta.update(
        dataflow_yaml=rec.dataflow_yaml,
        start_time_ns=str(rec.start_time_ns),
        recording_id=rec.header.recording_id,
    )
    w.add_metadata("dora", meta)
    # One MCAP channel per dora channel, Arrow type and data form (a struct channel whose
    # messages hold one row, or several, gets one MCAP channel for each; images Foxglove can
    # show are a form of their own): its schema then describes every message on it.
    ids: dict[tuple[str, pa.DataType, str], int] = {}
    total = rec.message_count  # the index's count: an upper bound for progress
    written = 0
    for msg in rec.iter_messages():
        form = data_form(msg.data)
        image = raw_image(msg.data, msg.metadata, msg.publish_time_ns) if form == "bytes" else None
        if image is not None:
            form = "image"
        key = (msg.channel, msg.data.type, form)
        cid = ids.get(key)
        if cid is None:
            schema = raw_image_schema() if image else message_schema(msg.data.type, form)
            name = RAW_IMAGE_SCHEMA_NAME if image else f"dora/{msg.data.type}"
            sid = 0
            if foxglove_readable(schema):
                sid = w.register_schema(name, "jsonschema", json.dumps(schema).encode())
            else:
                note(
                    f"note: channel `{msg.channel}` ({msg.data.type}) is exported without a "
                    "JSON Schema: Foxglove's JSON Schema reader cannot describe lists of lists "
                    "or null values; Foxglove shows its messages as plain JSON"
                )
            cid = ids[key] = w.register_channel(
                msg.channel, "json", sid, {ARROW_TYPE_KEY: arrow_type_token(msg.data.type)}
            )
        doc: dict[str, Any] = image or {"data": array_to_json(msg.data)}
        doc["seq"] = msg.seq
        if msg.cause is not None:
            doc["cause"] = msg.cause
        doc["metadata"] = msg.metadata
        if msg.taken is not None:
            doc["taken"] = msg.taken
        if msg.took is not None:
            doc["took"] = [f"{src}#{seq}" for src, seq in msg.took]
        w.add_message(
            cid,
            log_time=msg.log_time_ns,
            data=json.dumps(doc, separators=(",", ":")).encode(),
            publish_time=msg.publish_time_ns,
            sequence=msg.seq & 0xFFFFFFFF,
        )
        written += 1
        if progress is not None and written % 1000 == 1:
            progress(written, total)
    w.finish()
    if progress is not None:
        progress(written, written)
    return written
