"""Starts a grandchild (``sleep 300``) that inherits stdout/stderr, records its pid, then ends.

Env: MODE = exit (return at once), sigkill (SIGKILL itself), wait (wait for STOP), detached
(the grandchild gets its own session, out of the node's process group, then return at once).
"""

import os
import signal
import subprocess

from _util import save

from dora import Node

node = Node()
mode = os.environ.get("MODE", "exit")
child = subprocess.Popen(["sleep", "300"], start_new_session=mode == "detached")
save("grandchild", {"pid": child.pid, "node_pid": os.getpid()})
print("grandchild started", flush=True)
if mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "wait":
    for event in node:
        if event["type"] == "STOP":
            break
