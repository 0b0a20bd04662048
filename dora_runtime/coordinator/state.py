"""The coordinator's persistent state: SQLite in WAL mode under the state directory.

What survives a coordinator restart: the daemons it knew (machine id, labels, Zenoh endpoint),
every dataflow (name, YAML, status, reason, times, what failed in it), where each node was placed,
its last status, exit code and restart count. Writes are small and synchronous (WAL + ``synchronous=NORMAL``: a
commit costs no fsync of the database file), so the asyncio server calls them directly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVE = ("starting", "running", "recovering", "stopping")
"""Dataflow statuses that are not final."""

_COLUMNS_ADDED = [("dataflows", "failures", "TEXT NOT NULL DEFAULT '{}'")]
"""Columns added since the first schema: added to a database an older coordinator left."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daemons (
    machine_id TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '{}',
    zenoh TEXT,
    connected INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS dataflows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    descriptor_path TEXT,
    yaml TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT '{}',
    parts_done TEXT NOT NULL DEFAULT '[]',
    failures TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    started REAL,
    ended REAL
);
CREATE TABLE IF NOT EXISTS nodes (
    dataflow_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    returncode INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dataflow_id, node_id)
);
"""


@dataclass
class DataflowRow:
    id: str
    name: str
    status: str
    reason: str | None
    descriptor_path: str | None
    yaml: str
    plan: dict[str, Any]
    parts_done: list[str]
    failures: dict[str, str]
    """What failed, in the order it failed: node (or tap) id -> ``exit 3``, ``signal SIGKILL``,
    ``killed: did not stop within 5 s``, ``could not start: ...``."""
    created: float
    started: float | None
    ended: float | None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def machines(self) -> list[str]:
        """Every machine running a part of it (nodes or taps)."""
        return sorted({n["machine_id"] for n in self.nodes.values()} | set(self.plan))

    @property
    def complete(self) -> bool:
        """Every machine's part has ended (reported done, or lost)."""
        return set(self.machines) <= set(self.parts_done)

    def summary(self) -> dict[str, Any]:
        """What ``dora list`` shows (uptime in seconds)."""
        running = sum(1 for n in self.nodes.values() if n["status"] == "running")
        end = self.ended if self.ended is not None else time.time()
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "failures": self.failures,
            "nodes": len(self.nodes),
            "running": running,
            "uptime_s": end - self.started if self.started else 0.0,
            "machines": self.machines,
            "placement": {k: v["machine_id"] for k, v in self.nodes.items()},
            "node_status": {
                k: {"status": v["status"], "returncode": v["returncode"], "restarts": v["restarts"]}
                for k, v in self.nodes.items()
            },
        }


class StateStore:
    """Thin typed access to the SQLite file. One connection, used from the event loop thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        for table, column, decl in _COLUMNS_ADDED:
            have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def close(self) -> None:
        self._db.close()

    # -- daemons -------------------------------------------------------------------------

    def upsert_daemon(self, machine_id: str, labels: dict[str, str], zenoh: str | None, pid: int):
        self._db.execute(
            "INSERT INTO daemons (machine_id, labels, zenoh, connected, pid, last_seen) "
            "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT(machine_id) DO UPDATE SET labels=excluded.labels,"
            " zenoh=excluded.zenoh, connected=1, pid=excluded.pid, last_seen=excluded.last_seen",
            (machine_id, json.dumps(labels), zenoh, pid, time.time()),
        )

    def set_daemon_connected(self, machine_id: str, connected: bool) -> None:
        self._db.execute(
            "UPDATE daemons SET connected=?, last_seen=? WHERE machine_id=?",
            (int(connected), time.time(), machine_id),
        )

    def remove_daemon(self, machine_id: str) -> None:
        self._db.execute("DELETE FROM daemons WHERE machine_id=?", (machine_id,))

    def mark_all_daemons_disconnected(self) -> None:
        self._db.execute("UPDATE daemons SET connected=0")

    def daemons(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM daemons ORDER BY machine_id").fetchall()
        return [{**dict(r), "labels": json.loads(r["labels"])} for r in rows]

    # -- dataflows -----------------------------------------------------------------------

    def insert_dataflow(
        self,
        dataflow_id: str,
        name: str,
        descriptor_path: str | None,
        yaml: str,
        plan: dict[str, Any],
        placement: dict[str, str],
    ) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO dataflows (id, name, status, descriptor_path, yaml, plan, created) "
                "VALUES (?, ?, 'starting', ?, ?, ?, ?)",
                (dataflow_id, name, descriptor_path, yaml, json.dumps(plan), time.time()),
            )
            self._db.executemany(
                "INSERT INTO nodes (dataflow_id, node_id, machine_id) VALUES (?, ?, ?)",
                [(dataflow_id, node, machine) for node, machine in placement.items()],
            )

    def set_status(self, dataflow_id: str, status: str, reason: str | None = None) -> None:
        now = time.time()
        if status == "running":
            self._db.execute(
                "UPDATE dataflows SET status=?, started=COALESCE(started, ?) WHERE id=?",
                (status, now, dataflow_id),
            )
        elif status in ACTIVE:
            self._db.execute("UPDATE dataflows SET status=? WHERE id=?", (status, dataflow_id))
        else:
            self._db.execute(
                "UPDATE dataflows SET status=?, reason=COALESCE(?, reason), ended=? WHERE id=?",
                (status, reason, now, dataflow_id),
            )
        if reason is not None and status in ACTIVE:
            self._db.execute("UPDATE dataflows SET reason=? WHERE id=?", (reason, dataflow_id))

    def set_node(
        self, dataflow_id: str, node_id: str, status: str, returncode: int | None = None
    ) -> None:
        self._db.execute(
            "UPDATE nodes SET status=?, returncode=? WHERE dataflow_id=? AND node_id=?",
            (status, returncode, dataflow_id, node_id),
        )

    def mark_part_done(self, dataflow_id: str, machine: str) -> None:
        row = self.get(dataflow_id)
        if row is not None and machine not in row.parts_done:
            done = json.dumps([*row.parts_done, machine])
            self._db.execute("UPDATE dataflows SET parts_done=? WHERE id=?", (done, dataflow_id))

    def add_failures(self, dataflow_id: str, failures: dict[str, str]) -> dict[str, str]:
        """Record what failed (a later text for the same id replaces the earlier one); returns
        every failure of the dataflow so far."""
        row = self.get(dataflow_id)
        if row is None:
            return {}
        merged = {**row.failures, **failures}
        if merged != row.failures:
            self._db.execute(
                "UPDATE dataflows SET failures=? WHERE id=?", (json.dumps(merged), dataflow_id)
            )
        return merged

    def get(self, dataflow_id: str) -> DataflowRow | None:
        row = self._db.execute("SELECT * FROM dataflows WHERE id=?", (dataflow_id,)).fetchone()
        return self._row(row) if row is not None else None

    def dataflows(self, active_only: bool = False) -> list[DataflowRow]:
        sql = "SELECT * FROM dataflows"
        if active_only:
            sql += f" WHERE status IN ({','.join('?' * len(ACTIVE))})"
        rows = self._db.execute(sql + " ORDER BY created", ACTIVE if active_only else ()).fetchall()
        return [self._row(r) for r in rows]

    def _row(self, row: sqlite3.Row) -> DataflowRow:
        d = dict(row)
        d["plan"] = json.loads(d["plan"])
        d["parts_done"] = json.loads(d["parts_done"])
        d["failures"] = json.loads(d["failures"])
        df = DataflowRow(**d)
        for n in self._db.execute(
            "SELECT * FROM nodes WHERE dataflow_id=? ORDER BY rowid", (df.id,)
        ).fetchall():
            df.nodes[n["node_id"]] = dict(n)
        return df

    def resolve(self, ref: str) -> DataflowRow | None:
        """A dataflow by exact id, unique id prefix, or name (the newest with that name)."""
        row = self.get(ref)
        if row is not None:
            return row
        by_name = self._db.execute(
            "SELECT id FROM dataflows WHERE name=? ORDER BY created DESC LIMIT 1", (ref,)
        ).fetchone()
        if by_name is not None:
            return self.get(by_name["id"])
        prefix = self._db.execute(
            "SELECT id FROM dataflows WHERE id LIKE ? LIMIT 2", (ref.replace("%", "") + "%",)
        ).fetchall()
        return self.get(prefix[0]["id"]) if len(prefix) == 1 and len(ref) >= 4 else None

    def name_in_use(self, name: str) -> bool:
        row = self._db.execute(
            f"SELECT 1 FROM dataflows WHERE name=? AND status IN ({','.join('?' * len(ACTIVE))})",
            (name, *ACTIVE),
        ).fetchone()
        return row is not None
