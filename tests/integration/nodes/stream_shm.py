"""On every tick sends a 16 KiB array (shared memory) until STOP; records its segments.

Touches ``stream_shm.ready`` after 5 sends, with the segment names saved in ``stream_shm``.
"""

import numpy as np
from _util import save, signal_file

from dora import Node

node = Node()
sent = 0
for event in node:
    if event["type"] != "INPUT":
        continue
    node.send_output("out", np.full(2048, sent, dtype=np.int64))
    sent += 1
    if sent == 5:
        pool = node._pool
        names = sorted({r.name for r in pool._free} | {r.name for r in pool._busy})
        save("stream_shm", {"segments": names})
        signal_file("stream_shm.ready")
