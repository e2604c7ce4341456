"""devhost runs timer triggers on their schedule as the Functions host does (in process, on a
clock the test moves).

The host's side: Azure/azure-webjobs-sdk-extensions @ 2e7550f7, src/WebJobs.Extensions/
Extensions/Timers/ —

- ``Listener/TimerListener.cs``: ``StartAsync`` checks the schedule monitor for a missed
  occurrence (then runs at once, ``IsPastDue``), else honours ``RunOnStartup``, else waits for
  ``ScheduleStatus.Next``; ``InvokeJobFunction`` passes ``TimerInfo(schedule, status if
  UseMonitor, isPastDue)``, swallows the function's exception, and records ``{Last, Next,
  LastUpdated}`` computed from the time the invocation started;
- ``Scheduling/ScheduleMonitor.cs``, ``CheckPastDueAsync``: no status yet writes one; a status
  whose ``Next`` no longer follows from ``Last`` means the schedule changed (not past due);
- ``Scheduling/TimerSchedule.cs``, ``Create``: ``UseMonitor`` off for sub-minute schedules.

The function is the toy app's ``tick`` (tests/devhost/toyapp/triggers.py), run by devhost's
worker as any function is; what it records is what ``func.TimerRequest`` told it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devhost.app_loader import TriggeredFunction
from devhost.invoker import Worker
from devhost.triggers.clock import ManualClock
from devhost.triggers.timers import FileScheduleMonitor, TimerListener
from tests.devhost.toyapp import triggers as toy

T0 = datetime(2026, 5, 1, 9, 2, 30, tzinfo=UTC)
NEVER = "0001-01-01T00:00:00+00:00"


@pytest.fixture
def worker() -> Iterator[Worker]:
    worker = Worker(sync_threads=2)
    yield worker
    worker.stop()


@pytest.fixture
def tick(toy_index: Any) -> TriggeredFunction:
    toy.RUNS.clear()
    function: TriggeredFunction = next(f for f in toy_index.timers if f.name == "tick")
    return function


def ticks() -> list[dict[str, Any]]:
    return [run for run in toy.RUNS if run["function"] == "tick"]


def iso(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def settle() -> None:
    """Real time for anything the listener would do now (it does nothing without the clock)."""
    await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(listener: TimerListener) -> AsyncIterator[TimerListener]:
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await until(lambda: listener.status is not None)  # started: it has read the clock
    try:
        yield listener
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def listener(
    function: TriggeredFunction,
    worker: Worker,
    clock: ManualClock,
    state: Path,
    schedule: str,
    **binding: Any,
) -> TimerListener:
    function = dataclasses.replace(function, binding={**function.binding, **binding})
    return TimerListener(
        function,
        worker.call_async,
        clock,
        FileScheduleMonitor(state),
        {"TOYAPP_TICK_SCHEDULE": schedule},
    )


def test_a_timer_fires_at_each_occurrence_and_keeps_its_status(tick, worker, tmp_path):
    clock = ManualClock(T0)

    async def scenario() -> None:
        every_five = listener(tick, worker, clock, tmp_path, "0 */5 * * * *")
        async with running(every_five):
            await settle()
            assert ticks() == []  # 09:02:30: nothing due
            clock.set(datetime(2026, 5, 1, 9, 4, 59, tzinfo=UTC))
            await settle()
            assert ticks() == []
            clock.advance(1)  # 09:05:00
            await until(lambda: len(ticks()) == 1)
            clock.set(datetime(2026, 5, 1, 9, 10, 0, tzinfo=UTC))
            await until(lambda: len(ticks()) == 2)

    asyncio.run(scenario())
    first, second = ticks()
    assert first["pastDue"] is False
    assert first["schedule"] == {"AdjustForDST": True}
    # the status before the run: never run, next is this occurrence
    assert first["scheduleStatus"]["Last"] == NEVER
    assert iso(first["scheduleStatus"]["Next"]) == "2026-05-01T09:05:00+00:00"
    assert iso(second["scheduleStatus"]["Last"]) == "2026-05-01T09:05:00+00:00"
    assert iso(second["scheduleStatus"]["Next"]) == "2026-05-01T09:10:00+00:00"
    stored = json.loads((tmp_path / "tick.status").read_text())
    assert iso(stored["Last"]) == "2026-05-01T09:10:00+00:00"
    assert iso(stored["Next"]) == "2026-05-01T09:15:00+00:00"


def test_run_on_startup_runs_at_once_and_is_not_past_due(tick, worker, tmp_path):
    clock = ManualClock(T0)

    async def scenario() -> None:
        daily = listener(tick, worker, clock, tmp_path, "0 0 3 * * *", runOnStartup=True)
        async with running(daily):
            await until(lambda: len(ticks()) == 1)
            await settle()
            assert len(ticks()) == 1  # once, not again until 03:00
            clock.set(datetime(2026, 5, 2, 3, 0, tzinfo=UTC))
            await until(lambda: len(ticks()) == 2)

    asyncio.run(scenario())
    startup, scheduled = ticks()
    assert startup["pastDue"] is False
    assert scheduled["pastDue"] is False
    # the startup run counts as the last run; the next occurrence follows from it
    assert iso(scheduled["scheduleStatus"]["Last"]) == T0.isoformat()
    assert iso(scheduled["scheduleStatus"]["Next"]) == "2026-05-02T03:00:00+00:00"


def test_a_restart_after_a_missed_occurrence_runs_it_at_once_as_past_due(tick, worker, tmp_path):
    clock = ManualClock(T0)

    async def scenario() -> None:
        async with running(listener(tick, worker, clock, tmp_path, "0 */5 * * * *")):
            clock.set(datetime(2026, 5, 1, 9, 5, tzinfo=UTC))
            await until(lambda: len(ticks()) == 1)
        # devhost is down from 09:05 to 09:12: the 09:10 occurrence is missed
        clock.set(datetime(2026, 5, 1, 9, 12, tzinfo=UTC))
        async with running(listener(tick, worker, clock, tmp_path, "0 */5 * * * *")):
            await until(lambda: len(ticks()) == 2)
            await settle()
            assert len(ticks()) == 2  # one catch-up run, not one per missed occurrence
            clock.set(datetime(2026, 5, 1, 9, 15, tzinfo=UTC))
            await until(lambda: len(ticks()) == 3)

    asyncio.run(scenario())
    _, catch_up, regular = ticks()
    assert catch_up["pastDue"] is True
    assert iso(catch_up["scheduleStatus"]["Next"]) == "2026-05-01T09:10:00+00:00"
    assert regular["pastDue"] is False
    assert iso(regular["scheduleStatus"]["Last"]) == "2026-05-01T09:12:00+00:00"


def test_a_restart_before_the_next_occurrence_is_not_past_due(tick, worker, tmp_path):
    clock = ManualClock(T0)

    async def scenario() -> None:
        async with running(listener(tick, worker, clock, tmp_path, "0 */5 * * * *")):
            clock.set(datetime(2026, 5, 1, 9, 5, tzinfo=UTC))
            await until(lambda: len(ticks()) == 1)
        clock.set(datetime(2026, 5, 1, 9, 8, tzinfo=UTC))
        async with running(listener(tick, worker, clock, tmp_path, "0 */5 * * * *")):
            await settle()
            assert len(ticks()) == 1
            clock.set(datetime(2026, 5, 1, 9, 10, tzinfo=UTC))
            await until(lambda: len(ticks()) == 2)

    asyncio.run(scenario())
    assert ticks()[1]["pastDue"] is False


def test_a_changed_schedule_is_not_past_due(tick, worker, tmp_path):
    clock = ManualClock(T0)

    async def scenario() -> None:
        async with running(listener(tick, worker, clock, tmp_path, "0 */5 * * * *")):
            clock.set(datetime(2026, 5, 1, 9, 5, tzinfo=UTC))
            await until(lambda: len(ticks()) == 1)
        clock.set(datetime(2026, 5, 1, 9, 12, tzinfo=UTC))
        hourly = listener(tick, worker, clock, tmp_path, "0 0 * * * *")
        async with running(hourly):
            await settle()
            assert len(ticks()) == 1  # 09:10 was missed, but under the old schedule
            assert hourly.status is not None
            assert hourly.status.next == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)

    asyncio.run(scenario())


def test_a_sub_minute_schedule_runs_without_the_monitor(tick, worker, tmp_path):
    clock = ManualClock(T0)

    async def scenario() -> None:
        every_ten = listener(tick, worker, clock, tmp_path, "*/10 * * * * *")
        assert every_ten.use_monitor is False
        async with running(every_ten):
            for expected in (1, 2, 3):
                clock.advance(10)
                await until(lambda n=expected: len(ticks()) == n)  # type: ignore[misc]

    asyncio.run(scenario())
    assert [run["scheduleStatus"] for run in ticks()] == [{}, {}, {}]
    assert not (tmp_path / "tick.status").exists()


def test_a_failing_timer_keeps_its_schedule(worker, tmp_path):
    calls: list[bool] = []

    def flaky(timer: Any) -> None:
        calls.append(timer.past_due)
        raise RuntimeError("boom")

    function = TriggeredFunction(
        "flaky", "timer", {"type": "timerTrigger", "schedule": "0 * * * * *"}, flaky
    )
    clock = ManualClock(T0)

    async def scenario() -> None:
        every_minute = TimerListener(
            function, worker.call_async, clock, FileScheduleMonitor(tmp_path), {}
        )
        async with running(every_minute):
            clock.set(datetime(2026, 5, 1, 9, 3, tzinfo=UTC))
            await until(lambda: len(calls) == 1)
            clock.set(datetime(2026, 5, 1, 9, 4, tzinfo=UTC))
            await until(lambda: len(calls) == 2)
        assert [run["outcome"] for run in every_minute.to_json()["lastRuns"]] == ["failed"] * 2

    asyncio.run(scenario())


def test_a_run_longer_than_the_period_is_followed_at_once_by_the_next(worker, tmp_path):
    """The next occurrence is computed from the time the run *started*: a run that outlasts the
    period is followed at once by the next, never by two at the same time."""
    clock = ManualClock(T0)
    release = asyncio.Event()
    starts: list[datetime] = []

    async def slow(timer: Any) -> None:
        starts.append(clock.now())
        if len(starts) == 1:
            await release.wait()

    function = TriggeredFunction(
        "slow", "timer", {"type": "timerTrigger", "schedule": "0 */5 * * * *"}, slow
    )

    async def invoke(func: Callable[..., Any], kwargs: Any) -> Any:
        return await func(**kwargs)

    async def scenario() -> None:
        timer = TimerListener(function, invoke, clock, FileScheduleMonitor(tmp_path), {})
        async with running(timer):
            clock.set(datetime(2026, 5, 1, 9, 5, tzinfo=UTC))
            await until(lambda: len(starts) == 1)
            clock.set(datetime(2026, 5, 1, 9, 11, tzinfo=UTC))  # past 09:10, still running
            await settle()
            assert len(starts) == 1
            release.set()
            await until(lambda: len(starts) == 2)

    asyncio.run(scenario())
    assert starts == [
        datetime(2026, 5, 1, 9, 5, tzinfo=UTC),
        datetime(2026, 5, 1, 9, 11, tzinfo=UTC),
    ]
