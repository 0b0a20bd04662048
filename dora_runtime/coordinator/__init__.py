"""The coordinator: places dataflows on daemons and keeps their state (SQLite) across restarts."""

from dora_runtime.coordinator.placement import PlacementError, place
from dora_runtime.coordinator.server import Coordinator, run_coordinator
from dora_runtime.coordinator.state import StateStore

__all__ = ["Coordinator", "PlacementError", "StateStore", "place", "run_coordinator"]
