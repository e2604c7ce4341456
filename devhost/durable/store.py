"""SQLite persistence for the durable engine: instances, histories, inbox, activity queue.

One connection per thread (``check_same_thread`` stays on), WAL journal, and one process-wide
lock around write transactions so writers never see ``SQLITE_BUSY``. A transaction that
committed survives ``SIGKILL``; everything else is redone on restart (at-least-once).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.durable.spill import SpillWatch, event_name

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    parent_task_id INTEGER
);
CREATE INDEX IF NOT EXISTS instances_created ON instances (created_time, instance_id);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    event TEXT NOT NULL,
    visible_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, id);
CREATE INDEX IF NOT EXISTS inbox_visible ON inbox (visible_at);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    dispatch_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS activities_instance ON activities (instance_id);
"""


@dataclass(frozen=True)
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    parent_instance_id: str | None
    parent_execution_id: str | None
    parent_task_id: int | None


@dataclass(frozen=True)
class InboxRow:
    id: int
    instance_id: str
    execution_id: str | None
    event: dict[str, Any]
    visible_at: float


@dataclass(frozen=True)
class ActivityRow:
    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None
    dispatch_count: int


_INSTANCE_COLUMNS = ", ".join(InstanceRow.__dataclass_fields__)


class Store:
    """The durable state of one devhost (one task hub) in ``<state dir>/durable.sqlite3``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Values that would spill to blobs on Azure Storage (devhost/durable/spill.py).
        self.spill = SpillWatch()
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._written_lock = threading.Lock()
        self.history_events_written = 0
        self.history_bytes_written = 0
        with self._write_lock:
            self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), serialised across threads."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self._conn()

    # --- instances -------------------------------------------------------------------------
    def get_instance(
        self, instance_id: str, conn: sqlite3.Connection | None = None
    ) -> InstanceRow | None:
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?"  # noqa: S608
        row = (conn or self.read()).execute(sql, (instance_id,)).fetchone()
        return InstanceRow(**dict(row)) if row else None

    def query_instances(
        self,
        *,
        created_from: str | None = None,
        created_to: str | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[InstanceRow]:
        clauses: list[str] = []
        args: list[Any] = []
        if created_from:
            clauses.append("created_time >= ?")
            args.append(created_from)
        if created_to:
            clauses.append("created_time <= ?")
            args.append(created_to)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args.extend(statuses)
        if prefix:
            clauses.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(prefix), prefix])
        if after:
            clauses.append("(created_time, instance_id) > (?, ?)")
            args.extend(after)
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances"  # noqa: S608 - column names are constants
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_time, instance_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [InstanceRow(**dict(r)) for r in self.read().execute(sql, args).fetchall()]

    def insert_instance(self, conn: sqlite3.Connection, row: InstanceRow) -> None:
        placeholders = ", ".join("?" for _ in InstanceRow.__dataclass_fields__)
        conn.execute(
            f"INSERT OR REPLACE INTO instances ({_INSTANCE_COLUMNS}) VALUES ({placeholders})",  # noqa: S608 - column names are constants
            tuple(getattr(row, f) for f in InstanceRow.__dataclass_fields__),
        )

    def update_instance(self, conn: sqlite3.Connection, instance_id: str, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(
            f"UPDATE instances SET {assignments} WHERE instance_id = ?",  # noqa: S608 - column names are constants
            (*fields.values(), instance_id),
        )

    def delete_instance_data(self, conn: sqlite3.Connection, instance_id: str) -> None:
        """Everything but the instance row: history, inbox, queued activities."""
        conn.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
        conn.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
        conn.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))

    def purge_instance(self, conn: sqlite3.Connection, instance_id: str) -> None:
        self.delete_instance_data(conn, instance_id)
        conn.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))

    # --- history ---------------------------------------------------------------------------
    def get_history(self, instance_id: str) -> list[dict[str, Any]]:
        rows = (
            self.read()
            .execute("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))
            .fetchall()
        )
        return [json.loads(r["event"]) for r in rows]

    def append_history(
        self, conn: sqlite3.Connection, instance_id: str, start: int, events: list[dict[str, Any]]
    ) -> None:
        self.spill.history(instance_id, events)
        rows = [(instance_id, start + i, json.dumps(e)) for i, e in enumerate(events)]
        conn.executemany("INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)", rows)
        # What was ever written, older generations (continue_as_new) included: the history a
        # send costs, not only what is left of it at the end (GET /_dev/stats).
        with self._written_lock:
            self.history_events_written += len(rows)
            self.history_bytes_written += sum(len(row[2]) for row in rows)

    def history_length(self, conn: sqlite3.Connection, instance_id: str) -> int:
        row = conn.execute(
            "SELECT COUNT(*) AS n FROM history WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return int(row["n"])

    # --- inbox -----------------------------------------------------------------------------
    def add_inbox(
        self,
        conn: sqlite3.Connection,
        instance_id: str,
        execution_id: str | None,
        event: dict[str, Any],
        visible_at: float | None = None,
        *,
        message: bool = True,
    ) -> None:
        """Queue ``event`` for the instance; ``execution_id`` None: for whichever execution is
        current when it is processed. ``message=False``: an event queued again (not a new queue
        message on Azure), not checked against the message size limit a second time."""
        for name in ("Input", "Result", "Reason", "Details"):  # what the message carries
            if message and isinstance(event.get(name), str):
                what = f"the {event_name(event)}.{name} message"
                self.spill.message(instance_id, what, event[name])
        conn.execute(
            "INSERT INTO inbox (instance_id, execution_id, event, visible_at) VALUES (?, ?, ?, ?)",
            (instance_id, execution_id, json.dumps(event), visible_at or 0.0),
        )

    def due_inbox(self, instance_id: str, now: float | None = None) -> list[InboxRow]:
        rows = (
            self.read()
            .execute(
                "SELECT id, instance_id, execution_id, event, visible_at FROM inbox "
                "WHERE instance_id = ? AND visible_at <= ? ORDER BY id",
                (instance_id, now if now is not None else time.time()),
            )
            .fetchall()
        )
        return [_inbox_row(r) for r in rows]

    def unaddressed_inbox(self, conn: sqlite3.Connection, instance_id: str) -> list[InboxRow]:
        """The instance's queued events that name no execution (raised events, terminations)."""
        rows = conn.execute(
            "SELECT id, instance_id, execution_id, event, visible_at FROM inbox "
            "WHERE instance_id = ? AND execution_id IS NULL ORDER BY id",
            (instance_id,),
        ).fetchall()
        return [_inbox_row(r) for r in rows]

    def delete_inbox(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        conn.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in ids])

    def ready_instances(self, now: float) -> list[str]:
        rows = (
            self.read()
            .execute("SELECT DISTINCT instance_id FROM inbox WHERE visible_at <= ?", (now,))
            .fetchall()
        )
        return [r["instance_id"] for r in rows]

    def next_visible_at(self, now: float) -> float | None:
        row = (
            self.read()
            .execute("SELECT MIN(visible_at) AS t FROM inbox WHERE visible_at > ?", (now,))
            .fetchone()
        )
        return row["t"] if row and row["t"] is not None else None

    # --- activities ------------------------------------------------------------------------
    def add_activity(
        self,
        conn: sqlite3.Connection,
        instance_id: str,
        execution_id: str,
        task_id: int,
        name: str,
        input_text: str | None,
    ) -> int:
        self.spill.message(instance_id, f"the input message of activity {name}", input_text)
        cursor = conn.execute(
            "INSERT INTO activities (instance_id, execution_id, task_id, name, input) "
            "VALUES (?, ?, ?, ?, ?)",
            (instance_id, execution_id, task_id, name, input_text),
        )
        return int(cursor.lastrowid or 0)

    def get_activity(self, activity_id: int) -> ActivityRow | None:
        row = (
            self.read().execute("SELECT * FROM activities WHERE id = ?", (activity_id,)).fetchone()
        )
        return ActivityRow(**dict(row)) if row else None

    def pending_activities(self) -> list[ActivityRow]:
        rows = self.read().execute("SELECT * FROM activities ORDER BY id").fetchall()
        return [ActivityRow(**dict(r)) for r in rows]

    def mark_dispatched(self, activity_id: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE activities SET dispatch_count = dispatch_count + 1 WHERE id = ?",
                (activity_id,),
            )


def _inbox_row(row: sqlite3.Row) -> InboxRow:
    return InboxRow(
        row["id"],
        row["instance_id"],
        row["execution_id"],
        json.loads(row["event"]),
        row["visible_at"],
    )
