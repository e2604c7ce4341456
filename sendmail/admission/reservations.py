"""Quota reservations: concurrent sends never together exceed what is left of the 24-hour quota.

``GetSendQuota`` says how much of the rolling 24-hour quota is used (``SentLast24Hours``), not how
much running sends are about to use. Two large sends admitted against the same reading would
overrun it, and the second would then fail per recipient with ``SES_DAILY_QUOTA_EXCEEDED``
instead of being refused up front with 429. So each admitted SES send reserves its recipients.

Storage: one Azure Table partition (``ses``):

- the row ``admissions``: a token every admission rewrites with ``If-Match`` — admissions are
  serialised by it (an admission that lost the race reads again and decides again);
- one row per running send (row key = its instance id): ``Count`` reserved, ``Remaining`` not
  settled yet, ``CreatedAt``.

A send is admitted when ``SentLast24Hours + Σ Remaining + its recipients ≤ Max24HourSend``; then
its row and the token are written in one entity group transaction. As the send goes, every run of
a batch **settles** what it sent or failed for good (``Remaining`` decreases, with the row's
ETag): from then on SES counts those messages in ``SentLast24Hours``, so they are not counted
twice. The send **releases** its row when it finishes. Double counting is left only for messages
of the batch runs still in progress (SES has counted them, they are not settled yet): the check
is conservative by at most about a minute of sending per lane. Rows older than 24 hours (a send
that never released, e.g. terminated) are ignored — the rolling window has forgotten their
messages too — and deleted by the next admission.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sendmail.contract.errors import QuotaExceeded

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "SendMailQuota"
PARTITION = "ses"
TOKEN_ROW = "admissions"  # noqa: S105 (a row key, not a secret)
#: A reservation older than this no longer holds anything (the quota is a rolling 24 hours).
LIFETIME = timedelta(hours=24)
#: A rolling 24-hour window frees capacity gradually; there is no exact time to come back.
RETRY_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class Reservation:
    instance_id: str
    count: int
    remaining: int
    created: datetime


def check_room(needed: int, limit: float, sent: float, outstanding: int) -> None:
    """Raise :class:`QuotaExceeded` unless ``needed`` fits the quota after what is reserved."""
    left = int(max(0.0, limit - sent - outstanding))
    if needed <= left:
        return
    logger.warning("ses quota: %d needed, %d left, %d reserved", needed, left, outstanding)
    if needed > limit:
        message = (
            f"This send needs {needed} messages but the SES 24-hour quota is {int(limit)}; "
            "split it across days or raise the quota"
        )
    elif outstanding:
        message = (
            f"This send needs {needed} messages but only {left} are left in the SES 24-hour "
            f"quota once the {outstanding} reserved by sends still running are counted; "
            "retry later"
        )
    else:
        message = (
            f"This send needs {needed} messages but only {left} are left in the SES 24-hour "
            "quota; retry later"
        )
    raise QuotaExceeded(message, retry_after=RETRY_AFTER_SECONDS, reason="daily_quota")


class QuotaReservations(Protocol):
    def reserve(
        self, instance_id: str, needed: int, limit: float, sent: float, now: datetime
    ) -> None:
        """Reserve ``needed`` recipients for ``instance_id`` or raise :class:`QuotaExceeded`."""
        ...

    def settle(self, instance_id: str, count: int) -> None:
        """``count`` more of the send's recipients were sent or failed for good."""
        ...

    def release(self, instance_id: str) -> None:
        """The send is over: what it did not use is free again."""
        ...


class MemoryReservations:
    """In-process reservations (tests); the same arithmetic as the table."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, Reservation] = {}

    def reserve(
        self, instance_id: str, needed: int, limit: float, sent: float, now: datetime
    ) -> None:
        with self._lock:
            live = {k: r for k, r in self.rows.items() if now - r.created < LIFETIME}
            check_room(needed, limit, sent, sum(r.remaining for r in live.values()))
            live[instance_id] = Reservation(instance_id, needed, needed, now)
            self.rows = live

    def settle(self, instance_id: str, count: int) -> None:
        with self._lock:
            row = self.rows.get(instance_id)
            if row is not None:
                remaining = max(0, row.remaining - count)
                self.rows[instance_id] = Reservation(
                    row.instance_id, row.count, remaining, row.created
                )

    def release(self, instance_id: str) -> None:
        with self._lock:
            self.rows.pop(instance_id, None)


class TableReservations:
    """Reservations in an Azure Table (see the module docs for the rows)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ready = threading.Event()

    def _ensure_table(self) -> None:
        if self._ready.is_set():
            return
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self._table.create_table()
        with contextlib.suppress(ResourceExistsError):
            self._table.create_entity(
                {"PartitionKey": PARTITION, "RowKey": TOKEN_ROW, "Version": 0}
            )
        self._ready.set()

    def reserve(
        self, instance_id: str, needed: int, limit: float, sent: float, now: datetime
    ) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError
        from azure.data.tables import TableTransactionError, UpdateMode

        self._ensure_table()
        for _ in range(20):  # each lost race means another admission got in: decide again
            rows = list(
                self._table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION})
            )
            token = next(r for r in rows if r["RowKey"] == TOKEN_ROW)
            live: list[Any] = []
            stale: list[Any] = []
            for row in rows:
                if row["RowKey"] == TOKEN_ROW:
                    continue
                (live if now - _aware(row["CreatedAt"]) < LIFETIME else stale).append(row)
            check_room(needed, limit, sent, sum(int(r["Remaining"]) for r in live))
            operations: list[Any] = [
                (
                    "update",
                    {
                        "PartitionKey": PARTITION,
                        "RowKey": TOKEN_ROW,
                        "Version": int(token["Version"]) + 1,
                    },
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": token.metadata["etag"],
                        "match_condition": MatchConditions.IfNotModified,
                    },
                ),
                (
                    "upsert",
                    {
                        "PartitionKey": PARTITION,
                        "RowKey": instance_id,
                        "Count": needed,
                        "Remaining": needed,
                        "CreatedAt": now,
                    },
                ),
            ]
            operations += [
                ("delete", {"PartitionKey": PARTITION, "RowKey": r["RowKey"]}) for r in stale[:50]
            ]
            try:
                self._table.submit_transaction(operations)
                return
            except (TableTransactionError, HttpResponseError) as exc:
                if getattr(exc, "status_code", None) not in (409, 412):
                    raise
        raise QuotaExceeded(
            "Too many sends are being admitted at once; retry in a moment",
            retry_after=5,
            reason="admission_contention",
        )

    def settle(self, instance_id: str, count: int) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if count <= 0:
            return
        for _ in range(20):
            try:
                row = self._table.get_entity(PARTITION, instance_id)
            except ResourceNotFoundError:
                return
            remaining = max(0, int(row["Remaining"]) - count)
            try:
                self._table.update_entity(
                    {"PartitionKey": PARTITION, "RowKey": instance_id, "Remaining": remaining},
                    mode=UpdateMode.MERGE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return
            except ResourceModifiedError:  # another batch of the send settled meanwhile
                continue
        logger.warning("send %s: its quota reservation could not be settled", instance_id)

    def release(self, instance_id: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._table.delete_entity(PARTITION, instance_id)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def reservations_from_environment() -> TableReservations:
    from sendmail.platform.storage import table_client

    return TableReservations(table_client(DEFAULT_TABLE_NAME))
