"""Timer schedules as the Functions host reads them: NCRONTAB expressions and TimeSpans.

The timer extension (Azure/azure-webjobs-sdk-extensions @ 2e7550f7,
``src/WebJobs.Extensions/Extensions/Timers/Scheduling/TimerSchedule.cs``, ``Create``) resolves
``%setting%`` references in the expression, then tries ``CronSchedule.TryCreate`` — NCrontab
with seconds unless the expression has exactly five fields — and, when that fails,
``TimeSpan.TryParse`` (a :class:`ConstantSchedule`); anything else is an error.

NCrontab's rules (atifaziz/NCrontab @ d122d586, ``NCrontab/CrontabFieldImpl.cs``,
``CrontabField.cs``, ``CrontabSchedule.cs``), kept here because they differ from Unix cron:

- fields: second (0-59, six-field form only), minute (0-59), hour (0-23), day (1-31), month
  (1-12 or a name), day of week (0-6, Sunday 0, or a name); a name is any case-insensitive
  *prefix* of ``January``… / ``Sunday``… (``Mon``, ``mon``, even ``M``);
- a field is a comma list of items; an item is ``*``, ``a``, ``a-b`` (swapped when ``a > b``),
  each optionally ``/step``; ``a/step`` means ``a-max/step``; a step below 1 counts as 1;
- day of month and day of week must **both** match (Unix cron matches either);
- the next occurrence is the first matching second strictly after the base time's second;
  a day that the month does not have (31 in April) is skipped.

What is not modelled: the extension's Daylight Saving adjustments for ambiguous wall-clock
times (``CronSchedule.TryAdjustAmbiguousTime``): devhost evaluates schedules in UTC unless told
a zone (``devhost.triggers.timers``), where a wall time in a gap or overlap resolves as Python's
``zoneinfo`` resolves it (``fold=0``).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

#: (kind, minimum, maximum, names) per NCrontab field, seconds first.
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, tuple(calendar.month_name[1:])),
    ("day of week", 0, 6, ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                           "Saturday")),
)  # fmt: skip

#: The last year .NET's ``DateTime`` holds: no occurrence is looked for past it.
_MAX_YEAR = 9999


class ScheduleError(ValueError):
    """The expression is neither a valid NCRONTAB expression nor a TimeSpan."""


def _parse_value(text: str, kind: str, names: tuple[str, ...]) -> int:
    if not text:
        raise ScheduleError(f"a [{kind}] value cannot be empty")
    if text[0].isdigit():
        if not text.isdigit():
            raise ScheduleError(f"{text!r} is not a number for the [{kind}] field")
        return int(text)
    lowered = text.lower()
    for position, name in enumerate(names):
        if name.lower().startswith(lowered):
            return position + (1 if kind == "month" else 0)
    raise ScheduleError(f"{text!r} is not a valid [{kind}] value")


def _parse_field(text: str, index: int) -> frozenset[int]:
    """One field's set of values (``CrontabFieldImpl.InternalParse`` and
    ``CrontabField.Accumulate``)."""
    kind, low, high, names = _FIELDS[index]
    values: set[int] = set()
    items = text.split(",") if text.find(",") > 0 else [text]
    for whole in items:
        item, step = whole, None
        if whole.find("/") > 0:
            item, _, tail = whole.partition("/")
            if not tail.isdigit():
                raise ScheduleError(f"{whole!r}: the step of a [{kind}] item must be a number")
            step = int(tail)
        if item == "*":
            first, last = low, high
        elif item.find("-") > 0:
            head, _, tail = item.partition("-")
            first, last = _parse_value(head, kind, names), _parse_value(tail, kind, names)
            first, last = min(first, last), max(first, last)
            if first < low or last > high:
                raise ScheduleError(f"{item!r} is outside [{kind}]'s {low}-{high}")
        else:
            first = _parse_value(item, kind, names)
            if not low <= first <= high:
                raise ScheduleError(f"{first} is outside [{kind}]'s {low}-{high}")
            last = high if step is not None else first
        values.update(range(first, last + 1, max(step or 1, 1)))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """An NCRONTAB schedule, evaluated in ``zone``'s wall-clock time."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    zone: tzinfo

    #: What the host serialises as the schedule in ``TimerInfo`` (``CronSchedule.AdjustForDST``).
    adjust_for_dst = True

    @classmethod
    def parse(cls, expression: str, zone: tzinfo) -> CronSchedule:
        tokens = expression.split()
        # CronSchedule.HasSeconds: anything but five fields is parsed with seconds (so must be six)
        if len(tokens) == 5:
            tokens = ["0", *tokens]
        elif len(tokens) != 6:
            raise ScheduleError(f"{expression!r} has {len(tokens)} fields, not 6 (or 5)")
        s, m, h, d, mo, dow = (_parse_field(token, i) for i, token in enumerate(tokens))
        return cls(expression, s, m, h, d, mo, dow, zone)

    def _wall_time_after(self, base: time | None) -> time | None:
        """The first time of day matching the schedule and later than ``base`` (any, if None)."""
        for hour in sorted(self.hours):
            if base is not None and hour < base.hour:
                continue
            for minute in sorted(self.minutes):
                if base is not None and (hour, minute) < (base.hour, base.minute):
                    continue
                for second in sorted(self.seconds):
                    candidate = time(hour, minute, second)
                    if base is None or candidate > base:
                        return candidate
        return None

    def next_wall_time(self, base: datetime) -> datetime | None:
        """The first naive wall-clock time strictly after ``base``'s second, or None before the
        end of year 9999 (``CrontabSchedule.TryGetNextOccurrence``)."""
        base = base.replace(microsecond=0)
        start = base.date()
        for year in range(start.year, _MAX_YEAR + 1):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                days_in_month = calendar.monthrange(year, month)[1]
                for day in sorted(self.days):
                    if day > days_in_month:
                        break
                    current = date(year, month, day)
                    if current < start or (current.weekday() + 1) % 7 not in self.days_of_week:
                        continue
                    found = self._wall_time_after(base.time() if current == start else None)
                    if found is not None:
                        return datetime.combine(current, found)
        return None

    def next_after(self, now: datetime) -> datetime:
        """The next occurrence after the aware ``now``, aware in the schedule's zone."""
        wall = self.next_wall_time(now.astimezone(self.zone).replace(tzinfo=None))
        if wall is None:
            return datetime.max.replace(tzinfo=self.zone)
        return wall.replace(tzinfo=self.zone)

    def is_sub_minute(self, now: datetime) -> bool:
        """``TimerSchedule.ShouldDisableScheduleMonitor``: every field after the first is a
        wildcard, and more than one occurrence falls within the next minute."""
        full = [frozenset(range(low, high + 1)) for _, low, high, _ in _FIELDS]
        rest = [self.minutes, self.hours, self.days, self.months, self.days_of_week]
        if any(values != full[i + 1] for i, values in enumerate(rest)):
            return False
        first = self.next_after(now)
        return self.next_after(first) < now + timedelta(minutes=1)

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class ConstantSchedule:
    """A TimeSpan schedule: every ``interval`` from the previous occurrence
    (``ConstantSchedule.GetNextOccurrence``)."""

    expression: str
    interval: timedelta

    adjust_for_dst = False

    def next_after(self, now: datetime) -> datetime:
        return now + self.interval

    def is_sub_minute(self, now: datetime) -> bool:
        return self.interval < timedelta(minutes=1)

    def __str__(self) -> str:
        return self.expression


Schedule = CronSchedule | ConstantSchedule

# .NET TimeSpan.TryParse's invariant forms: "d", "[d.]hh:mm[:ss[.fffffff]]", optional sign.
_TIMESPAN = re.compile(
    r"^\s*(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})"
    r"(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?\s*$"
)
_DAYS_ONLY = re.compile(r"^\s*(?P<sign>-)?(?P<days>\d+)\s*$")


def parse_timespan(text: str) -> timedelta:
    """A .NET ``TimeSpan`` string (``00:00:02``, ``1.00:00:00``, ``01:30``, and a bare ``7`` =
    seven **days**, as .NET reads it). Raises :class:`ScheduleError`."""
    if m := _DAYS_ONLY.match(text):
        value = timedelta(days=int(m["days"]))
        return -value if m["sign"] else value
    m = _TIMESPAN.match(text)
    if m is None:
        raise ScheduleError(f"{text!r} is not a TimeSpan (hh:mm:ss)")
    hours, minutes, seconds = int(m["h"]), int(m["m"]), int(m["s"] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ScheduleError(f"{text!r} is not a TimeSpan: a component is out of range")
    fraction = float(f"0.{m['f']}") if m["f"] else 0.0
    value = timedelta(
        days=int(m["days"] or 0), hours=hours, minutes=minutes, seconds=seconds + fraction
    )
    return -value if m["sign"] else value


def parse_schedule(expression: str, zone: tzinfo) -> Schedule:
    """``TimerSchedule.Create`` for an already resolved expression: NCRONTAB first, then a
    TimeSpan. Raises :class:`ScheduleError`."""
    try:
        return CronSchedule.parse(expression, zone)
    except ScheduleError as cron_error:
        try:
            interval = parse_timespan(expression)
        except ScheduleError:
            raise ScheduleError(
                f"the schedule expression {expression!r} was not recognized as a valid cron "
                f"expression or timespan string ({cron_error})"
            ) from None
    if interval <= timedelta(0):
        # The host would start a timer that fires continuously; refused here instead.
        raise ScheduleError(f"the schedule {expression!r} is not a positive interval")
    return ConstantSchedule(expression, interval)
