"""The time the timer triggers see: the system's, or one a test moves by hand.

Timers ask a :class:`Clock` what time it is and sleep on it, so a test can run a daily schedule
in milliseconds: :class:`ManualClock` stands still until :meth:`ManualClock.advance` moves it,
and wakes the sleepers whose time has come. Queue polling does not use it: its delays are the
storage service's (visibility timeouts run on the emulator's clock).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time have passed."""
        ...


class SystemClock:
    """The machine's clock and ``asyncio.sleep``."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock that moves only when told (tests). Use it from one event loop."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware start time")
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._now + timedelta(seconds=seconds), waiter)
        self._sleepers.append(entry)
        try:
            await waiter
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper that is due."""
        self._now += timedelta(seconds=seconds)
        for due, waiter in self._sleepers:
            if due <= self._now and not waiter.done():
                waiter.set_result(None)

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forward only)."""
        delta = (when.astimezone(UTC) - self._now).total_seconds()
        if delta < 0:
            raise ValueError("ManualClock only moves forward")
        self.advance(delta)
