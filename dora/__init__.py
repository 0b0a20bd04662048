"""Compatibility shim: ``from dora import Node`` works as with dora-rs's Python package."""

from enum import Enum as _Enum

from dora_runtime import Node, __version__

__all__ = ["DoraStatus", "Node", "__version__"]


class DoraStatus(_Enum):
    """Operator status, kept so code importing it from dora-rs still imports."""

    CONTINUE = 0
    STOP = 1
    STOP_ALL = 2
