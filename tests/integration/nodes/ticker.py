"""On each timer tick sends the tick count on ``out``; exits after MAX_TICKS ticks."""

from _util import env_int

from dora import Node

node = Node()
limit = env_int("MAX_TICKS", 20)
n = 0
for event in node:
    if event["type"] == "INPUT":
        node.send_output("out", [n])
        n += 1
        if n >= limit:
            break
