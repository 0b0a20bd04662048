"""The per-node configuration the daemon hands to a node in ``DORA_NODE_CONFIG`` (JSON)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

ENV_VAR = "DORA_NODE_CONFIG"


@dataclass
class EdgeConfig:
    """One receiver of an output: where to connect and how its input queue behaves."""

    node: str
    input: str
    socket: str
    queue_size: int = 10
    backpressure: bool = False
    taken: bool = False
    """The receiver keeps, with each message, the inputs the sender had taken (``[cause,
    {source: seq}]`` in the frame's cause field): a tap (recorder), or the bridge to other
    machines' taps."""


@dataclass
class InputConfig:
    source: str
    queue_size: int = 10
    queue_policy: str = "drop_oldest"

    @property
    def source_node(self) -> str:
        return self.source.split("/", 1)[0]


@dataclass
class NodeConfig:
    dataflow_id: str
    node_id: str
    daemon_socket: str
    listen_fd: int | None
    inputs: dict[str, InputConfig] = field(default_factory=dict)
    outputs: dict[str, list[EdgeConfig]] = field(default_factory=dict)
    shm_prefix: str = ""
    shm_allowed_prefix: str = ""
    descriptor_path: str | None = None
    node_raw: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    lockstep: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        d = json.loads(text)
        d["inputs"] = {k: InputConfig(**v) for k, v in d.get("inputs", {}).items()}
        d["outputs"] = {k: [EdgeConfig(**e) for e in v] for k, v in d.get("outputs", {}).items()}
        return cls(**d)

    @classmethod
    def from_env(cls) -> NodeConfig | None:
        text = os.environ.get(ENV_VAR)
        return cls.from_json(text) if text else None
