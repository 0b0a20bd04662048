"""Sends COUNT messages on ``out``: value i as int64, padded to PAYLOAD_BYTES if set.

Env: OUTPUT (out), COUNT (10), PAYLOAD_BYTES (0: a one-element array), LARGE_EVERY (0: never; else every Nth
message is 32 KiB), INTERVAL_S (0), START_DELAY_S (0), EXIT (normal|sigkill), NAME (send_seq).
Saves the send duration, the names of the segments it created, and ``node._pool.created``.
"""

import os
import signal
import time

import numpy as np
import pyarrow as pa
from _util import env_float, env_int, save

from dora import Node


def payload(i: int, nbytes: int) -> pa.Array:
    n = max(1, nbytes // 8)
    arr = np.zeros(n, dtype=np.int64)
    arr[0] = i
    return pa.array(arr)


node = Node()
output = os.environ.get("OUTPUT", "out")
count = env_int("COUNT", 10)
nbytes = env_int("PAYLOAD_BYTES", 0)
large_every = env_int("LARGE_EVERY", 0)
interval = env_float("INTERVAL_S", 0.0)
name = os.environ.get("NAME", "send_seq")
time.sleep(env_float("START_DELAY_S", 0.0))
start = time.monotonic()
for i in range(count):
    size = 32768 if large_every and i % large_every == 0 else nbytes
    node.send_output(output, payload(i, size), {"i": i})
    if interval:
        time.sleep(interval)
elapsed = time.monotonic() - start
pool = node._pool
segments = sorted({r.name for r in pool._free} | {r.name for r in pool._busy})
save(name, {"elapsed_s": elapsed, "created": pool.created, "segments": segments})
if os.environ.get("EXIT") == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
