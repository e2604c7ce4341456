"""devhost's durable engine in-process, for orchestration tests that replay real histories.

The real SDK runs the real orchestrators; devhost's engine applies their actions as the Azure
host's shim does (``devhost/durable/shim.py``). Activities are whatever the test registers under
the real names. :class:`Gate` holds activities until the test releases them, so a test decides
the order in which work finishes and can look at what the host has started meanwhile.
:class:`RecordingStore` keeps every history event and instance value the host wrote, across
``continue_as_new`` (which deletes an instance's history), so a test can see every generation of
an instance and every payload the task hub held.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devhost.app_loader import FunctionIndex, index_functions
from devhost.durable.engine import Engine, EngineOptions
from devhost.durable.history import TERMINAL_STATUSES, EventType
from devhost.durable.spill import VARIABLE_SIZE_PROPERTIES
from devhost.durable.store import InstanceRow, Store
from devhost.invoker import Worker

_INDEXES: dict[int, FunctionIndex] = {}


def index_once(app: Any) -> FunctionIndex:
    """``app.get_functions()`` may be called once per app and process: cache the index."""
    if id(app) not in _INDEXES:
        _INDEXES[id(app)] = index_functions(app)
    return _INDEXES[id(app)]


class RecordingStore(Store):
    """A :class:`Store` that also remembers, in memory, every history event it appended (with
    its position in the instance's history: 0 starts a new execution) and every ``input``,
    ``output`` and ``custom_status`` it wrote to an instance row."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._record = threading.Lock()
        #: (instance id, position in its history, event), in the order they were written.
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        #: (instance id, column, text) for every instance value written.
        self.values: list[tuple[str, str, str]] = []

    def append_history(
        self, conn: Any, instance_id: str, start: int, events: list[dict[str, Any]]
    ) -> None:
        super().append_history(conn, instance_id, start, events)
        with self._record:
            self.events.extend((instance_id, start + i, e) for i, e in enumerate(events))

    def insert_instance(self, conn: Any, row: InstanceRow) -> None:
        super().insert_instance(conn, row)
        self._note(row.instance_id, {"input": row.input, "output": row.output})

    def update_instance(self, conn: Any, instance_id: str, **fields: Any) -> None:
        super().update_instance(conn, instance_id, **fields)
        self._note(instance_id, fields)

    def _note(self, instance_id: str, fields: dict[str, Any]) -> None:
        with self._record:
            self.values.extend(
                (instance_id, name, value)
                for name, value in fields.items()
                if name in ("input", "output", "custom_status") and isinstance(value, str)
            )

    def generations(self, instance_id: str) -> list[list[dict[str, Any]]]:
        """The instance's histories, one per execution (``continue_as_new`` starts a new one)."""
        found: list[list[dict[str, Any]]] = []
        with self._record:
            for instance, seq, e in self.events:
                if instance != instance_id:
                    continue
                if seq == 0 or not found:
                    found.append([])
                found[-1].append(e)
        return found

    def payloads(self) -> list[tuple[str, str, str]]:
        """(instance id, what, text) of every value the host held: the history events'
        variable-size properties (inputs, results, outputs, failure details) and the instances'
        inputs, outputs and custom statuses."""
        with self._record:
            found = [
                (instance, f"{EventType(int(e['EventType'])).name}.{name}", e[name])
                for instance, _, e in self.events
                for name in VARIABLE_SIZE_PROPERTIES
                if isinstance(e.get(name), str)
            ]
            found += [(instance, f"instance {name}", v) for instance, name, v in self.values]
        return found


@contextmanager
def running_engine(
    app: Any,
    state_dir: Path,
    *,
    activities: int = 16,
    threads: int | None = None,
    store: Store | None = None,
) -> Iterator[Engine]:
    """An engine over ``app``; ``threads`` is the worker's sync pool (default: ``activities``
    plus the 4 orchestrator slots, so nothing waits for a thread); ``store`` defaults to a new
    :class:`Store` in ``state_dir``."""
    worker = Worker(sync_threads=threads if threads is not None else activities + 4)
    engine = Engine(
        store if store is not None else Store(state_dir / "durable.sqlite3"),
        index_once(app),
        worker,
        EngineOptions(max_concurrent_activities=activities, poll_interval=0.02),
    )
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
        worker.stop()


def wait_finished(engine: Engine, instance_id: str, timeout: float = 30) -> InstanceRow:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = engine.store.get_instance(instance_id)
        if row is not None and row.status in TERMINAL_STATUSES:
            return row
        time.sleep(0.02)
    raise TimeoutError(f"{instance_id} did not finish: {engine.store.get_instance(instance_id)}")


def run(engine: Engine, name: str, payload: Any, timeout: float = 30) -> InstanceRow:
    instance_id = engine.start_orchestration(name, None, json.dumps(payload))
    return wait_finished(engine, instance_id, timeout)


def output(row: InstanceRow) -> Any:
    assert row.status == "Completed", row.output
    return json.loads(row.output or "null")


class Gate:
    """Activities call :meth:`hold` with a key and block until the test releases that key."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.started: list[str] = []
        self._released: dict[str, list[Any]] = {}
        self.blocked = 0

    def hold(self, key: str) -> Any:
        with self._cond:
            self.started.append(key)
            self.blocked += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: bool(self._released.get(key)), timeout=60)
            self.blocked -= 1
            outcome = self._released[key].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def release(self, key: str, outcome: Any = None) -> None:
        with self._cond:
            self._released.setdefault(key, []).append(outcome)
            self._cond.notify_all()

    def settle(self, engine: Engine, timeout: float = 10) -> list[str]:
        """Wait until the host has done all it will do while the held activities stay held;
        returns the keys started so far. A durable timer due later does not count as work:
        tests that need timers to fire first keep them shorter than the quiet period here
        (5 polls of 20 ms)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            idle, in_flight = engine.idle()
            with self._cond:
                held = self.blocked
            quiet = quiet + 1 if idle and in_flight == held else 0
            if quiet >= 5:
                with self._cond:
                    return list(self.started)
            time.sleep(0.02)
        raise TimeoutError("the engine did not settle")
