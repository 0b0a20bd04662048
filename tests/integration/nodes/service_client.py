"""Sends three requests and records the ids it got and the responses that came back."""

import pyarrow as pa
from _util import save

from dora import Node

node = Node()
sent = {}
for i in range(3):
    rid = node.send_service_request("request", pa.array([i, i + 1]), {"n": i})
    sent[rid] = i
responses = []
for event in node:
    if event["type"] == "INPUT":
        md = event["metadata"]
        responses.append(
            {
                "request_id": md.get("request_id"),
                "n": md.get("n"),
                "value": event["value"].to_pylist(),
            }
        )
        if len(responses) == 3:
            break
save("service", {"sent": sent, "responses": responses})
