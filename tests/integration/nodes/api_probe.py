"""Exercises the Node API surface step by step against ``feeder``; saves what it observed."""

import asyncio
import logging
import time

import pyarrow as pa
from _util import save, signal_file, wait_file

from dora import Node


def summary(event):
    if event is None:
        return None
    out = {"type": event["type"], "id": event.get("id"), "kind": event.get("kind")}
    if event["type"] == "INPUT":
        out["value"] = event["value"].to_pylist()
    if event["type"] == "ERROR":
        out["error"] = event.get("error")
    return out


node = Node()
r = {}

# Nothing sent yet: empty, try_recv gives None, next(timeout) gives an ERROR event in time.
r["empty_at_start"] = node.is_empty()
r["try_recv_empty"] = node.try_recv()
t0 = time.monotonic()
r["timeout_event"] = summary(node.next(timeout=0.2))
r["timeout_took_s"] = time.monotonic() - t0

# Three messages arrive while we are not reading: try_recv takes one, drain the rest.
signal_file("burst")
wait_file("sent")
deadline = time.monotonic() + 5
while node.is_empty() and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.2)  # let all three reach the queue
r["empty_after_burst"] = node.is_empty()
r["try_recv"] = summary(node.try_recv())
r["drain"] = [summary(e) for e in node.drain()]
r["empty_after_drain"] = node.is_empty()
r["drain_when_empty"] = node.drain()


async def use_asyncio():
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    timed_out = await node.recv_async(timeout=0.2)
    signal_file("one_more")
    event = await node.recv_async(timeout=5)
    task.cancel()
    return summary(timed_out), summary(event), ticks


r["recv_async_timeout"], r["recv_async"], r["loop_ticks"] = asyncio.run(use_asyncio())

r["node_config"] = node.node_config()
descriptor = node.dataflow_descriptor()
r["descriptor_node_ids"] = [n["id"] for n in descriptor["nodes"]]
r["dataflow_id"] = node.dataflow_id()

node.log("info", "log via node.log")
logging.info("log via logging.info")
logging.getLogger("probe.sub").warning("log via a named logger")

try:
    node.send_output("undeclared", pa.array([1]))
    r["undeclared_error"] = None
except Exception as e:  # noqa: BLE001 - we record whatever it raised
    r["undeclared_error"] = f"{type(e).__name__}: {e}"

signal_file("finish")
r["closed"] = summary(node.next(timeout=5))
r["all_closed"] = summary(node.next(timeout=5))
r["end"] = summary(node.next(timeout=5))
r["after_end"] = summary(node.next(timeout=0.2))
save("api_probe", r)
