"""Recording, replay and comparison for dora-py dataflows."""

from dora_replay._reader import Problem
from dora_replay._recording import ChannelInfo, Message, Recording, open
from dora_replay._records import FORMAT_VERSION
from dora_replay._writer import Writer, WriterStats, open_writer
from dora_replay.errors import RecordingCorruptError, RecordingError, RecordingNotFoundError

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
]
