"""Sends on ``out`` when ``api_probe`` asks for it through files, so the probe's timing is exact.

Protocol: on ``burst`` send [1], [2], [3] then touch ``sent``; on ``one_more`` send [4];
on ``finish`` exit (which closes the probe's input).
"""

import pyarrow as pa
from _util import signal_file, wait_file

from dora import Node

node = Node()
wait_file("burst")
for i in (1, 2, 3):
    node.send_output("out", pa.array([i]))
signal_file("sent")
wait_file("one_more")
node.send_output("out", pa.array([4]))
wait_file("finish")
