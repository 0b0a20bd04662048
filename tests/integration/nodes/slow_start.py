"""Takes ``START_S`` seconds (default 2) before it creates ``Node()`` (a node importing a large
library), then reads events until the stream ends; saves ``{"events": [types...]}``."""

import time

from _util import env_float, save, signal_file

signal_file("slow_start.started")
time.sleep(env_float("START_S", 2.0))

from dora import Node  # noqa: E402

node = Node()
save("slow_start", {"events": [event["type"] for event in node]})
