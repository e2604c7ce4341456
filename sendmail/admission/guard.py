"""The account guard: the service's own bounce and complaint rates, and what it does when they
climb — before SES puts the account under review or pauses it.

SES reviews an account at about 5% bounces or 0.1% complaints and may pause it at higher rates
(docs/deploy.md). The service already records every event SES reports (the SNS route); the guard
counts them per hour (:class:`GuardStore`: the ``SendMailGuard`` table, one row an hour) and
looks at a trailing window of ``SENDMAIL_GUARD_WINDOW_HOURS``:

- **rates**: ``bounced / sample`` and ``complained / sample``, where ``sample`` is the messages
  with a known fate in the window (delivered or permanently bounced) and ``bounced`` counts
  permanent bounces only — the ones that hurt a sender's reputation (a transient bounce is a full
  mailbox, a greylisting). Judged only from ``SENDMAIL_GUARD_MIN_SAMPLE`` messages on: a handful
  of sends says nothing;
- **trips** when either reaches ``SENDMAIL_GUARD_BOUNCE_RATE`` (0.04) or
  ``SENDMAIL_GUARD_COMPLAINT_RATE`` (0.0008), both below SES's review thresholds, or at once
  when SES's own ``EnforcementStatus`` is ``PROBATION`` or worse (:meth:`AccountGuard.trip`);
- **while tripped** new aws-sends that are bulk — ``marketing``, or more than
  ``SENDMAIL_GUARD_BULK_RECIPIENTS`` recipients whatever their category (a list sent without one
  must not escape) — are refused with 503 and ``Retry-After`` (:meth:`AccountGuard.admit`);
  running ones are paused as the guard's (:func:`bulk`: the routes pause them; a caller's resume
  does not lift that, sendmail/sending/control.py); small transactional sends keep flowing;
- it stays tripped until an operator resets it (``POST /api/v1/account/guard/reset``) after
  looking at what bounced: rates fall only as the window moves, and a guard that let go on its
  own would trip again on the next batch.

A redelivered SNS notification can be counted twice if the route crashed between counting and
recording it: the rates err towards tripping, never away from it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sendmail.contract.errors import ServiceUnavailable
from sendmail.platform import telemetry
from sendmail.platform.tables import LazyTable, TableUnavailable

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from sendmail.platform.settings import Settings
    from sendmail.sending.sends import SendRecord

logger = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "SendMailGuard"
_PARTITION = "guard"
_STATE_ROW = "state"
_HOUR_FORMAT = "h%Y%m%d%H"
#: How long the state read at admission is kept (a trip reaches every instance this fast).
STATE_CACHE_SECONDS = 5.0
#: What a refused bulk send is told to wait: an operator's reset is needed, not a moment.
RETRY_AFTER_SECONDS = 3600
#: Attempts at a counter or state write that loses a race to another writer.
WRITE_ATTEMPTS = 8

GuardStateName = Literal["ok", "tripped"]


@dataclass(frozen=True, slots=True)
class GuardState:
    state: GuardStateName = "ok"
    reason: str | None = None
    since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        since = self.since.isoformat().replace("+00:00", "Z") if self.since else None
        return {"state": self.state, "reason": self.reason, "since": since}


@dataclass(frozen=True, slots=True)
class Counts:
    """Messages SES reported on in the window, by fate."""

    delivered: int = 0
    bounced: int = 0
    complained: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.delivered + other.delivered,
            self.bounced + other.bounced,
            self.complained + other.complained,
        )

    @property
    def sample(self) -> int:
        return self.delivered + self.bounced

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sample if self.sample else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sample if self.sample else 0.0


class GuardStore(Protocol):
    def add(self, hour: str, counts: Counts) -> None:
        """Add ``counts`` to the hour's row."""
        ...

    def window(self, first: str, last: str) -> Counts:
        """The sum of the hours ``first`` .. ``last`` (row keys, inclusive)."""
        ...

    def state(self) -> GuardState: ...

    def set_state(self, state: GuardState, *, only_from: GuardStateName) -> bool:
        """Write ``state`` if the stored one is ``only_from``; whether it was written."""
        ...


class MemoryGuardStore:
    """In-process guard store (unit tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hours: dict[str, Counts] = {}
        self._state = GuardState()

    def add(self, hour: str, counts: Counts) -> None:
        with self._lock:
            self.hours[hour] = self.hours.get(hour, Counts()) + counts

    def window(self, first: str, last: str) -> Counts:
        with self._lock:
            total = Counts()
            for hour, counts in self.hours.items():
                if first <= hour <= last:
                    total = total + counts
            return total

    def state(self) -> GuardState:
        with self._lock:
            return self._state

    def set_state(self, state: GuardState, *, only_from: GuardStateName) -> bool:
        with self._lock:
            if self._state.state != only_from:
                return False
            self._state = state
            return True


class TableGuardStore:
    """The guard's table: partition ``guard``, a ``state`` row and one row an hour
    (``hYYYYMMDDHH``: ``Delivered``, ``Bounced``, ``Complained``). Writes use the row's ETag, so
    concurrent SNS deliveries never lose a count."""

    def __init__(self, client: TableClient) -> None:
        self._table = LazyTable(client)

    def add(self, hour: str, counts: Counts) -> None:
        def change(entity: dict[str, Any]) -> dict[str, Any]:
            return {
                "Delivered": int(entity.get("Delivered") or 0) + counts.delivered,
                "Bounced": int(entity.get("Bounced") or 0) + counts.bounced,
                "Complained": int(entity.get("Complained") or 0) + counts.complained,
            }

        self._change(hour, change)

    def window(self, first: str, last: str) -> Counts:
        client = self._table.client
        query = "PartitionKey eq @p and RowKey ge @first and RowKey le @last"
        params = {"p": _PARTITION, "first": first, "last": last}
        rows = self._table.call(
            "read", lambda: list(client.query_entities(query, parameters=params))
        )
        total = Counts()
        for row in rows:
            total = total + Counts(
                int(row.get("Delivered") or 0),
                int(row.get("Bounced") or 0),
                int(row.get("Complained") or 0),
            )
        return total

    def state(self) -> GuardState:
        entity = self._get(_STATE_ROW)
        if entity is None or entity.get("State") != "tripped":
            return GuardState()
        since = entity.get("Since")
        return GuardState(
            "tripped",
            str(entity.get("Reason") or ""),
            since if isinstance(since, datetime) else None,
        )

    def set_state(self, state: GuardState, *, only_from: GuardStateName) -> bool:
        written: list[bool] = []

        def change(entity: dict[str, Any]) -> dict[str, Any] | None:
            if (entity.get("State") or "ok") != only_from:
                written.append(False)
                return None
            written.append(True)
            return {"State": state.state, "Reason": state.reason or "", "Since": state.since}

        self._change(_STATE_ROW, change)
        return bool(written and written[-1])

    def _get(self, row: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        client = self._table.client
        try:
            return self._table.call(
                "read",
                lambda: client.get_entity(_PARTITION, row),
                passthrough=(ResourceNotFoundError,),
            )
        except ResourceNotFoundError:
            return None

    def _change(self, row: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Read the row, ``change`` it, write it back on the ETag read (create it when absent);
        a write that loses a race reads and changes again."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        client = self._table.client
        lost = (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError)
        for _ in range(WRITE_ATTEMPTS):
            found = self._get(row)
            values = change(dict(found) if found is not None else {})
            if values is None:
                return
            entity = {"PartitionKey": _PARTITION, "RowKey": row, **values}
            etag = found.metadata["etag"] if found is not None else None

            def write(entity: dict[str, Any] = entity, etag: str | None = etag) -> Any:
                if etag is None:
                    return client.create_entity(entity)
                return client.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )

            try:
                self._table.call("write", write, passthrough=lost)
            except lost:
                continue
            return
        raise TableUnavailable(f"the guard's row {row} kept changing under us")


class AccountGuard:
    """The guard's decisions over a :class:`GuardStore` (see the module docs)."""

    def __init__(
        self,
        store: GuardStore,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._cached: tuple[float, GuardState] | None = None
        self._lock = threading.Lock()

    def observe(self, counts: Counts) -> GuardState | None:
        """Count SES's events of now; the state if this tripped the guard, else None."""
        if not (counts.delivered or counts.bounced or counts.complained):
            return None
        now = self._clock()
        self.store.add(_hour(now), counts)
        if not (counts.bounced or counts.complained):
            return None  # deliveries only lower the rates
        reason = self.judge(self.rates(now))
        if reason is None:
            return None
        return self.trip(reason, "bounce_rate" if reason.startswith("bounce") else "complaint_rate")

    def rates(self, now: datetime | None = None) -> Counts:
        """The window's counts (``sample``, ``bounce_rate``, ``complaint_rate``)."""
        now = now or self._clock()
        first = now - timedelta(hours=self.settings.SENDMAIL_GUARD_WINDOW_HOURS)
        return self.store.window(_hour(first), _hour(now))

    def judge(self, counts: Counts) -> str | None:
        """Why these counts trip the guard, or None."""
        settings = self.settings
        if counts.sample < settings.SENDMAIL_GUARD_MIN_SAMPLE:
            return None
        window = f"the last {settings.SENDMAIL_GUARD_WINDOW_HOURS:g} hours"
        if counts.bounce_rate >= settings.SENDMAIL_GUARD_BOUNCE_RATE:
            return (
                f"bounce rate {counts.bounce_rate:.2%} over {window} ({counts.bounced} of "
                f"{counts.sample}) reached {settings.SENDMAIL_GUARD_BOUNCE_RATE:.2%}"
            )
        if counts.complaint_rate >= settings.SENDMAIL_GUARD_COMPLAINT_RATE:
            return (
                f"complaint rate {counts.complaint_rate:.3%} over {window} ({counts.complained} "
                f"of {counts.sample}) reached {settings.SENDMAIL_GUARD_COMPLAINT_RATE:.3%}"
            )
        return None

    def trip(self, reason: str, cause: str = "other") -> GuardState | None:
        """Trip the guard; the new state if this call tripped it (None: it already was).
        ``cause`` names the reason for the metrics (``sendmail.guard.trips``): ``bounce_rate``,
        ``complaint_rate`` or ``enforcement``."""
        state = GuardState("tripped", reason, self._clock())
        if not self.store.set_state(state, only_from="ok"):
            return None
        logger.warning("account guard tripped: %s", reason)
        self._forget()
        telemetry.guard_tripped(cause)
        return state

    def reset(self) -> bool:
        """Let sending go on (an operator's decision); whether it was tripped."""
        done = self.store.set_state(GuardState(), only_from="tripped")
        if done:
            logger.warning("account guard reset by an operator")
        self._forget()
        return done

    def state(self, *, fresh: bool = False) -> GuardState:
        """The guard's state, read at most every :data:`STATE_CACHE_SECONDS` unless ``fresh``."""
        with self._lock:
            cached = self._cached
        if not fresh and cached is not None and time.monotonic() - cached[0] < STATE_CACHE_SECONDS:
            return cached[1]
        state = self.store.state()
        with self._lock:
            self._cached = (time.monotonic(), state)
        return state

    def is_bulk(self, category: str, total: int) -> bool:
        return category == "marketing" or total > self.settings.SENDMAIL_GUARD_BULK_RECIPIENTS

    def admit(self, category: str, total: int) -> None:
        """Raise :class:`ServiceUnavailable` (503, ``Retry-After``) for a bulk aws-send while
        the guard is tripped; small transactional sends pass. A guard whose state cannot be read
        admits (logged): the guard protects the account, it must not stop transactional mail
        because a table hiccuped."""
        if not self.is_bulk(category, total):
            return
        try:
            state = self.state()
        except TableUnavailable:
            logger.warning("the account guard's state is unreadable; admitting", exc_info=True)
            return
        if state.state == "tripped":
            raise ServiceUnavailable(
                "Bulk sending is paused by the account guard: "
                f"{state.reason}. Small transactional sends still go out; an operator resumes "
                "bulk sending with POST /api/v1/account/guard/reset after investigating.",
                retry_after=RETRY_AFTER_SECONDS,
                reason="account_guard",
            )

    def _forget(self) -> None:
        with self._lock:
            self._cached = None


def bulk(
    guard: AccountGuard, running: list[SendRecord], category: Callable[[str], str]
) -> list[SendRecord]:
    """The unfinished SES sends the guard pauses: marketing (``category(list_ref)``: read only
    for sends not already bulk by size) or larger than the bulk limit — running, scheduled (they
    start paused) or paused by a caller (then held by both: a caller's resume no longer lets it
    run, and the guard's reset leaves the caller's pause)."""
    chosen = []
    for record in running:
        if record.kind != "ses" or record.finished is not None or record.control == "canceled":
            continue
        if record.total > guard.settings.SENDMAIL_GUARD_BULK_RECIPIENTS or guard.is_bulk(
            category(record.list_ref), record.total
        ):
            chosen.append(record)
    return chosen


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_HOUR_FORMAT)


def guard_store_from_environment(
    env: Mapping[str, str] = os.environ, *, table_name: str = DEFAULT_TABLE_NAME
) -> TableGuardStore:
    """The guard's table in the storage the Functions host uses. No network I/O."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableGuardStore(table_client(table_name, env))
    except StorageUnavailable as e:
        raise TableUnavailable(f"the guard's table cannot be used: {e}") from e
