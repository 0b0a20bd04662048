"""Answers each request with the doubled values, echoing the request's metadata."""

import pyarrow.compute as pc

from dora import Node

node = Node()
for event in node:
    if event["type"] == "INPUT":
        node.send_service_response("response", pc.multiply(event["value"], 2), event["metadata"])
