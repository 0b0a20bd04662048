"""Two threads call ``next()`` concurrently until the stream ends; saves what each got."""

import threading

from _util import save

from dora import Node

node = Node()
got = {"a": [], "b": []}
other = {"a": [], "b": []}


def consume(name):
    while True:
        event = node.next()
        if event is None:
            return
        if event["type"] == "INPUT":
            got[name].append(event["value"][0].as_py())
        else:
            other[name].append(event["type"])


threads = [threading.Thread(target=consume, args=(n,)) for n in got]
for t in threads:
    t.start()
for t in threads:
    t.join()
save("threads", {"got": got, "other": other})
