"""Sends every payload of ``catalog`` on ``out``, each tagged with ``metadata["case"]``."""

from catalog import METADATA, RAW_LARGE, RAW_SMALL, REUSED, cases

from dora import Node

node = Node()
for name, (data, _expected) in cases().items():
    node.send_output("out", data, {"case": name})

for name, content in REUSED.items():
    buf = bytearray(content)
    node.send_output("out", buf, {"case": name})
    buf[:] = bytes(len(buf))  # reused at once: what was sent must not change

with node.send_output_raw("out", len(RAW_SMALL), {"case": "raw_ctx_small"}) as buf:
    buf[:] = RAW_SMALL

sample = node.send_output_raw("out", len(RAW_LARGE), {"case": "raw_manual_large"})
sample.as_memoryview()[:] = RAW_LARGE
sample.send()

node.send_output("out", [0], {"case": "metadata", **METADATA})
