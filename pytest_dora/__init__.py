"""dora-py's pytest plugin: ``pytest --dora-replay golden/`` replays recordings as tests.

The plugin itself is :mod:`pytest_dora.plugin` (loaded through the ``pytest11`` entry point);
this package re-exports the types tests may want to name. Nothing here imports pyarrow.
"""

from pytest_dora._config import DoraConfig
from pytest_dora._dataflow import RunningDataflow
from pytest_dora._failure import ChannelMismatch, DoraItemError, GoldenMissing, ReplayCrashed

__all__ = [
    "ChannelMismatch",
    "DoraConfig",
    "DoraItemError",
    "GoldenMissing",
    "ReplayCrashed",
    "RunningDataflow",
]
