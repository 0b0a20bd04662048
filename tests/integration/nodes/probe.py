"""Records how it was started (interpreter, argv, env) and writes to stdout and stderr."""

import os
import sys

from _util import save

from dora import Node

node = Node()
print("hello from probe stdout")
print("hello from probe stderr", file=sys.stderr)
save(
    "probe",
    {
        "executable": sys.executable,
        "argv": sys.argv[1:],
        "greeting": os.environ.get("GREETING"),
        "number": os.environ.get("NUMBER"),
        "dataflow_id": node.dataflow_id(),
        "cores": sorted(os.sched_getaffinity(0)),
    },
)
