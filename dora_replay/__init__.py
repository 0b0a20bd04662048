"""Recording, replay and comparison for dora-py dataflows."""

from dora_replay._plan import ReplayError, compared_channels, find_dataflow
from dora_replay._reader import Problem
from dora_replay._recording import ChannelInfo, Message, Recording, open
from dora_replay._records import FORMAT_VERSION
from dora_replay._result import ReplayResult, TimingStats
from dora_replay._writer import Writer, WriterStats, open_writer
from dora_replay.compare import ChannelComparison, Comparison, Difference, compare_recordings
from dora_replay.errors import RecordingCorruptError, RecordingError, RecordingNotFoundError
from dora_replay.golden import GoldenUpdate, update_golden
from dora_replay.replay import replay
from dora_replay.tolerances import Tolerance, ToleranceError, Tolerances, load_tolerances

__all__ = [
    "FORMAT_VERSION",
    "ChannelInfo",
    "Message",
    "Problem",
    "Recording",
    "RecordingCorruptError",
    "RecordingError",
    "RecordingNotFoundError",
    "Writer",
    "WriterStats",
    "open",
    "open_writer",
    "ChannelComparison",
    "Comparison",
    "Difference",
    "GoldenUpdate",
    "ReplayError",
    "ReplayResult",
    "TimingStats",
    "Tolerance",
    "ToleranceError",
    "Tolerances",
    "compare_recordings",
    "compared_channels",
    "find_dataflow",
    "load_tolerances",
    "replay",
    "update_golden",
]
