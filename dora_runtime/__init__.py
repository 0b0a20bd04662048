"""dora-py runtime: dataflow descriptor, node API, transport, daemon.

``Node`` is imported lazily so that tools which only read dataflow files (the CLI) do not pay for
importing pyarrow.
"""

from typing import TYPE_CHECKING, Any

from dora_runtime.descriptor import Descriptor, InputSpec, NodeSpec, load_descriptor
from dora_runtime.errors import (
    DataflowFailed,
    DescriptorError,
    DoraError,
    NodeError,
    TransportError,
)

if TYPE_CHECKING:
    from dora_runtime.node import Node

__version__ = "0.1.0"

__all__ = [
    "DataflowFailed",
    "Descriptor",
    "DescriptorError",
    "DoraError",
    "InputSpec",
    "Node",
    "NodeError",
    "NodeSpec",
    "TransportError",
    "__version__",
    "load_descriptor",
]


def __getattr__(name: str) -> Any:
    if name == "Node":
        from dora_runtime.node import Node

        return Node
    raise AttributeError(f"module 'dora_runtime' has no attribute {name!r}")
