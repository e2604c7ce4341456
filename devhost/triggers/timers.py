"""Timer triggers, run on their schedule as the Functions host's timer extension runs them.

Sources: Azure/azure-webjobs-sdk-extensions @ 2e7550f7, ``src/WebJobs.Extensions/Extensions/
Timers/``: ``Listener/TimerListener.cs`` (start, past due, run on startup, the invocation and the
status after it), ``Scheduling/ScheduleMonitor.cs`` (``CheckPastDueAsync``),
``Scheduling/FileSystemScheduleMonitor.cs`` (the status file), ``Scheduling/TimerSchedule.cs``
(``useMonitor`` turned off for schedules more frequent than a minute), ``TimerInfo.cs`` and
``TimerTriggerAttribute.cs`` (``UseMonitor`` defaults to true). What the Python function receives
is built by the azure-functions library's own converter (``azure.functions.timer.
TimerRequestConverter``) from the ``TimerInfo`` JSON the host sends: ``{"Schedule":
{"AdjustForDST": ...}, "ScheduleStatus": {"Last", "Next", "LastUpdated"} | null, "IsPastDue"}``.

As the host does, per timer function:

- the schedule (``devhost.triggers.schedules``: NCRONTAB with seconds, or a TimeSpan, after
  ``%setting%`` references are resolved) is evaluated in the host's time zone — UTC, as on Azure,
  unless ``WEBSITE_TIME_ZONE`` names an IANA zone;
- **with the schedule monitor** (``useMonitor``, the default, unless the schedule fires more
  than once a minute) the status ``{Last, Next, LastUpdated}`` is kept across restarts —
  devhost keeps it in ``<state>/timers/<function>.status`` where Azure keeps a blob — and a
  start that finds ``Next`` already passed runs the function at once with ``past_due``
  ``True`` (a changed schedule is not past due: its next occurrence is recomputed);
- otherwise ``runOnStartup`` runs it at once on start, with ``past_due`` ``False``;
- then at each occurrence; the next one is computed from the time the invocation *started*, so
  a run longer than the period is followed at once by the next (never two at the same time); a
  function that raises is logged and the schedule goes on;
- the function gets ``schedule_status`` only with the monitor on (else ``{}``);
- a ``durableClient`` parameter gets the binding data an HTTP function's does (``client_binding``).

Not modelled: the singleton lock that keeps one host of a scaled-out app from running a timer
twice (devhost is one process), and the host's Daylight Saving adjustments (see
``devhost.triggers.schedules``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

from devhost.app_loader import TriggeredFunction
from devhost.invoker import InvocationContext, accepted_parameters
from devhost.triggers.clock import Clock
from devhost.triggers.names import BindingError, resolve_settings
from devhost.triggers.schedules import Schedule, parse_schedule

logger = logging.getLogger("devhost.timers")

Invoke = Callable[[Callable[..., Any], Mapping[str, Any]], Awaitable[Any]]
Reason = Literal["schedule", "pastDue", "runOnStartup", "manual"]

TIME_ZONE_ENV = "WEBSITE_TIME_ZONE"
#: ``default(DateTime)``: the status of a timer that never ran.
NEVER = datetime.min.replace(tzinfo=UTC)
#: The longest single sleep: the wall clock is read again at least this often (a suspended
#: laptop wakes to a past-due timer, as a host whose clock jumped would).
LONGEST_SLEEP_SECONDS = 30.0
RECENT_RUNS = 10


def host_time_zone(env: Mapping[str, str]) -> tzinfo:
    """UTC, as on Azure, unless ``WEBSITE_TIME_ZONE`` names an IANA zone (``Asia/Seoul``)."""
    name = env.get(TIME_ZONE_ENV, "").strip()
    if not name:
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("%s=%r is not an IANA time zone: timers run in UTC", TIME_ZONE_ENV, name)
        return UTC


def _text(value: datetime) -> str:
    return value.isoformat()


@dataclass(frozen=True)
class ScheduleStatus:
    """``ScheduleStatus``: the last occurrence run, the next expected, and when it was written."""

    last: datetime
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "Last": _text(self.last),
            "Next": _text(self.next),
            "LastUpdated": _text(self.last_updated),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScheduleStatus:
        def when(name: str) -> datetime:
            value = datetime.fromisoformat(str(data[name]))
            return value if value.tzinfo else value.replace(tzinfo=UTC)

        return cls(when("Last"), when("Next"), when("LastUpdated"))


class FileScheduleMonitor:
    """The schedule monitor's store: one ``<name>.status`` JSON file per timer
    (``FileSystemScheduleMonitor``), and ``ScheduleMonitor.CheckPastDueAsync``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.status"

    def get(self, name: str) -> ScheduleStatus | None:
        path = self.path(name)
        try:
            return ScheduleStatus.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("timer %s: ignoring an unreadable %s (%s)", name, path, type(e).__name__)
            return None

    def update(self, name: str, status: ScheduleStatus) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(name)
        temporary = path.with_suffix(".status.tmp")
        temporary.write_text(json.dumps(status.to_json()), encoding="utf-8")
        os.replace(temporary, path)

    def check_past_due(
        self, name: str, now: datetime, schedule: Schedule, last: ScheduleStatus | None
    ) -> tuple[timedelta, ScheduleStatus]:
        """How far past its recorded next occurrence the timer is (zero if not), and the status
        as it stands now — written back when it was missing or the schedule changed."""
        if last is None:
            upcoming = schedule.next_after(now)
            last = ScheduleStatus(NEVER, upcoming, now)
            self.update(name, last)
        else:
            if last.last != NEVER:
                expected, updated = schedule.next_after(last.last), last.last
            elif last.last_updated != NEVER:
                expected, updated = schedule.next_after(last.last_updated), last.last_updated
            else:
                expected, updated = schedule.next_after(now), now
            if last.next != expected:
                # the schedule changed: a next occurrence already past is not "past due"
                if now > expected:
                    expected, updated = schedule.next_after(now), now
                last = ScheduleStatus(NEVER, expected, updated)
                self.update(name, last)
        return (now - last.next if now > last.next else timedelta(0)), last


def build_timer_request(
    schedule: Schedule, status: ScheduleStatus | None, past_due: bool
) -> Any:  # azure.functions.TimerRequest
    """The ``func.TimerRequest`` the Python worker builds from the host's ``TimerInfo``."""
    from azure.functions import meta
    from azure.functions.timer import TimerRequestConverter

    info = {
        "Schedule": {"AdjustForDST": schedule.adjust_for_dst},
        "ScheduleStatus": status.to_json() if status is not None else None,
        "IsPastDue": past_due,
    }
    return TimerRequestConverter.decode(meta.Datum(json.dumps(info), "json"), trigger_metadata=None)


@dataclass(frozen=True)
class TimerRun:
    at: datetime
    reason: Reason
    past_due: bool
    succeeded: bool
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "at": _text(self.at),
            "reason": self.reason,
            "pastDue": self.past_due,
            "outcome": "succeeded" if self.succeeded else "failed",
            "ms": round(self.ms, 1),
        }


class TimerListener:
    """Runs one timer function on its schedule (``TimerListener``)."""

    def __init__(
        self,
        function: TriggeredFunction,
        invoke: Invoke,
        clock: Clock,
        monitor: FileScheduleMonitor | None,
        env: Mapping[str, str],
        client_binding: Callable[[], str] | None = None,
    ) -> None:
        """Raises ``BindingError`` or ``ScheduleError`` for a schedule the host would refuse
        (or a Durable client this listener has no ``client_binding`` for)."""
        if function.client_names and client_binding is None:
            raise BindingError(f"function {function.name} needs a Durable client")
        self.client_binding = client_binding
        binding = function.binding
        self.function = function
        self.invoke = invoke
        self.clock = clock
        self.zone = host_time_zone(env)
        self.expression = resolve_settings(str(binding.get("schedule", "")), env)
        self.schedule = parse_schedule(self.expression, self.zone)
        self.run_on_startup = bool(binding.get("runOnStartup") or False)
        use_monitor = binding.get("useMonitor")
        self.use_monitor = (use_monitor is None or bool(use_monitor)) and not (
            self.schedule.is_sub_minute(clock.now())
        )
        self.monitor = monitor if self.use_monitor else None
        self.status: ScheduleStatus | None = None
        self.recent: collections.deque[TimerRun] = collections.deque(maxlen=RECENT_RUNS)
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.function.name

    async def run(self, stop: asyncio.Event) -> None:
        """``StartAsync``, then every occurrence until ``stop`` is set."""
        now = self.clock.now()
        past_due = False
        status: ScheduleStatus | None = None
        if self.monitor is not None:
            status = self.monitor.get(self.name)
            overdue, checked = self.monitor.check_past_due(self.name, now, self.schedule, status)
            status = checked if status is not None else None
            past_due = overdue > timedelta(0)
        self.status = status or ScheduleStatus(NEVER, self.schedule.next_after(now), NEVER)
        startup: Reason | None = (
            "pastDue" if past_due else "runOnStartup" if self.run_on_startup else None
        )
        logger.info(
            "timer %s: schedule %r (%s), next %s%s",
            self.name,
            self.expression,
            self.zone,
            _text(self.status.next),
            f"; {startup} now" if startup else "",
        )
        while not stop.is_set():
            if startup is None and not await self._sleep_until(self.status.next, stop):
                break
            await self._fire(self.clock.now(), startup or "schedule")
            startup = None

    async def _sleep_until(self, due: datetime, stop: asyncio.Event) -> bool:
        """Sleep until ``due`` on the clock; False if stopped first."""
        while not stop.is_set():
            remaining = (due - self.clock.now()).total_seconds()
            if remaining <= 0:
                return True
            sleeper = asyncio.ensure_future(self.clock.sleep(min(remaining, LONGEST_SLEEP_SECONDS)))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeper, stopper):
                task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        return False

    async def _fire(self, invoked_at: datetime, reason: Reason) -> None:
        """``InvokeJobFunction``: run, then record the status from the invocation's start."""
        async with self._lock:
            assert self.status is not None
            past_due = reason == "pastDue"
            shown = self.status if self.monitor is not None else None
            await self._invoke(reason, shown, past_due)
            adjusted = invoked_at
            if reason == "schedule" and self.status.next > invoked_at:
                adjusted = self.status.next  # fired early (clock skew): count from the occurrence
            adjusted = adjusted.astimezone(self.zone)
            self.status = ScheduleStatus(adjusted, self.schedule.next_after(adjusted), adjusted)
            if self.monitor is not None:
                self.monitor.update(self.name, self.status)

    async def invoke_manually(self) -> None:
        """The admin API's run (``POST /admin/functions/<name>``): ``TimerTriggerBinding.
        BindAsync`` with no value — the stored status, not past due, and no status update."""
        status = self.monitor.get(self.name) if self.monitor is not None else None
        await self._invoke("manual", status, past_due=False)

    async def _invoke(self, reason: Reason, status: ScheduleStatus | None, past_due: bool) -> bool:
        function = self.function
        kwargs: dict[str, Any] = {
            function.trigger_name: build_timer_request(self.schedule, status, past_due)
        }
        for client in function.client_names:
            assert self.client_binding is not None  # checked when the listener was made
            kwargs[client] = self.client_binding()
        if "context" in accepted_parameters(function.func):
            kwargs["context"] = InvocationContext(function.name)
        at = self.clock.now()
        started = time.perf_counter()
        try:
            await self.invoke(function.func, kwargs)
            succeeded = True
        except Exception:
            logger.exception("timer %s raised (%s)", self.name, reason)
            succeeded = False
        elapsed = (time.perf_counter() - started) * 1000
        self.recent.appendleft(TimerRun(at, reason, past_due, succeeded, elapsed))
        logger.info(
            "timer %s: %s run %s, %.1fms",
            self.name,
            reason,
            "succeeded" if succeeded else "failed",
            elapsed,
        )
        return succeeded

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.name,
            "type": "timerTrigger",
            "schedule": self.expression,
            "timeZone": str(self.zone),
            "runOnStartup": self.run_on_startup,
            "useMonitor": self.use_monitor,
            "status": self.status.to_json() if self.status is not None else None,
            "lastRuns": [run.to_json() for run in self.recent],
        }
