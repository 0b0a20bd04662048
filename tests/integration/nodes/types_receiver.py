"""Checks every received payload against ``catalog``; saves one verdict per case."""

import datetime as dt

import pyarrow as pa
from _util import save, shm_mappings
from catalog import expected

from dora import Node

node = Node()
verdicts = {}
events = []
metadata = {}
for event in node:
    events.append(
        {"keys": sorted(event), "type": event["type"], "id": event["id"], "kind": event.get("kind")}
    )
    if event["type"] != "INPUT":
        continue
    value = event["value"]
    md = event["metadata"]
    case = md["case"]
    want = expected(case)
    maps = shm_mappings()
    in_shm = [
        any(start <= buf.address < end for start, end, _ in maps)
        for buf in value.buffers()
        if buf is not None and buf.size
    ]
    verdicts[case] = {
        "is_arrow": isinstance(value, pa.Array),
        "type": str(value.type),
        "expected_type": str(want.type),
        "equal": value.type == want.type and value.equals(want),
        "in_shm": in_shm,  # per non-empty buffer: inside a /dev/shm/dora-* mapping?
    }
    if case == "metadata":
        ts = md["timestamp"]
        metadata = {
            "values": {k: v for k, v in md.items() if k != "timestamp"},
            "timestamp_is_datetime": isinstance(ts, dt.datetime),
            "timestamp_utc": ts.tzinfo is not None and ts.utcoffset() == dt.timedelta(0),
            "timestamp_age_s": (dt.datetime.now(dt.UTC) - ts).total_seconds(),
        }
save("types", {"verdicts": verdicts, "events": events, "metadata": metadata})
