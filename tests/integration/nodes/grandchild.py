"""Starts a grandchild (``sleep 300``) that inherits stdout/stderr, records its pid, then ends.

Env: MODE = exit (return at once), sigkill (SIGKILL itself), wait (wait for STOP).
"""

import os
import signal
import subprocess

from _util import save

from dora import Node

node = Node()
child = subprocess.Popen(["sleep", "300"])
save("grandchild", {"pid": child.pid, "node_pid": os.getpid()})
print("grandchild started", flush=True)
mode = os.environ.get("MODE", "exit")
if mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "wait":
    for event in node:
        if event["type"] == "STOP":
            break
