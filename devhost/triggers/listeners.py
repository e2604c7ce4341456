"""Every queue and timer trigger of the app, started and stopped with devhost.

A trigger whose binding the host would refuse (an unresolved ``%setting%``, an invalid queue
name or schedule, no storage for its connection) is not run: it is logged at start and listed
under ``errors`` in ``GET /_dev/triggers`` — the host, too, keeps running the app's other
functions and lists that one as in error.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from devhost.app_loader import FunctionIndex
from devhost.triggers.clock import Clock, SystemClock
from devhost.triggers.names import BindingError
from devhost.triggers.queues import (
    PROCESSING_VISIBILITY_SECONDS,
    Invoke,
    QueueListener,
    QueuesOptions,
    queue_clients,
)
from devhost.triggers.schedules import ScheduleError
from devhost.triggers.timers import FileScheduleMonitor, TimerListener

logger = logging.getLogger("devhost.triggers")

TIMERS_DIR = "timers"
STOP_SECONDS = 15.0


class TriggerListeners:
    """The app's queue and timer listeners (``start``/``stop`` on devhost's event loop)."""

    def __init__(
        self,
        index: FunctionIndex,
        options: QueuesOptions,
        invoke: Invoke,
        state_dir: Path,
        *,
        env: Mapping[str, str] = os.environ,
        clock: Clock | None = None,
        processing_visibility: float = PROCESSING_VISIBILITY_SECONDS,
        client_binding: Callable[[], str] | None = None,
    ) -> None:
        """``client_binding``: the ``durableClient`` binding data (devhost's Durable API), for
        timer functions that take a Durable client."""
        from sendmail.platform.storage import StorageUnavailable

        self.queues: list[QueueListener] = []
        self.timers: list[TimerListener] = []
        #: function name -> why its trigger is not run
        self.errors: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop: asyncio.Event | None = None
        for function in index.queues:
            if function.client_names:
                self._refuse(function.name, "devhost gives no Durable client to a queue trigger")
                continue
            try:
                queue, poison = queue_clients(function, env)
            except (BindingError, StorageUnavailable) as e:
                self._refuse(function.name, str(e))
                continue
            self.queues.append(
                QueueListener(
                    function,
                    options,
                    invoke,
                    queue,
                    poison,
                    processing_visibility=processing_visibility,
                )
            )
        monitor = FileScheduleMonitor(state_dir / TIMERS_DIR)
        for function in index.timers:
            try:
                listener = TimerListener(
                    function, invoke, clock or SystemClock(), monitor, env, client_binding
                )
            except (BindingError, ScheduleError) as e:
                self._refuse(function.name, str(e))
                continue
            self.timers.append(listener)

    def _refuse(self, name: str, reason: str) -> None:
        self.errors[name] = reason
        logger.error("function %s is not run: %s", name, reason)

    def all(self) -> list[QueueListener | TimerListener]:
        return [*self.queues, *self.timers]

    def summary(self) -> str:
        parts = [f"{len(self.queues)} queue, {len(self.timers)} timer trigger(s)"]
        if self.errors:
            parts.append(f"{len(self.errors)} in error")
        return "; ".join(parts)

    async def start(self) -> None:
        stop = self._stop = asyncio.Event()
        for listener in self.all():
            task = asyncio.create_task(listener.run(stop), name=f"trigger {listener.function.name}")
            task.add_done_callback(_report_crash)
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop polling and scheduling; wait (a while) for the functions still running."""
        if self._stop is None:
            return
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def find(self, name: str) -> QueueListener | TimerListener | None:
        """The listener of function ``name`` (case-insensitive, as the host looks names up)."""
        for listener in self.all():
            if listener.function.name.lower() == name.lower():
                return listener
        return None

    async def invoke(self, name: str, text: str) -> bool:
        """Run a queue or timer function once now, as the admin API does; False if there is
        no such trigger."""
        listener = self.find(name)
        if listener is None:
            return False
        if isinstance(listener, QueueListener):
            await listener.invoke_manually(text)
        else:
            await listener.invoke_manually()
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "triggers": [listener.to_json() for listener in self.all()],
            "errors": [{"function": name, "error": why} for name, why in self.errors.items()],
        }


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped", task.get_name(), exc_info=task.exception())
