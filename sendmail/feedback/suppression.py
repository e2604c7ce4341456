"""The suppression list: addresses company mail (aws-send) no longer goes to.

SES reviews, and then pauses, accounts whose bounce or complaint rate climbs; mailing an address
that hard-bounced or complained again only raises both. So:

- **What puts an address on the list**: a ``Permanent`` bounce, or a complaint other than
  ``not-spam`` (:mod:`sendmail.feedback.ses_events` decides), arriving through the events route. The
  first event wins: a later one for a listed address changes nothing, so ``createdTime`` is when
  the address was first suppressed and the entry names the event that caused it.
- **What it does**: :func:`skipping_suppressed` wraps an SES batch's send. Before SES is called,
  the batch's recipients are looked up (:meth:`TableSuppressionList.lookup`); a
  listed one is not sent and is reported as failed with ``SUPPRESSED``. A lookup that fails
  raises: nothing is sent that could not be checked, and the activity is retried like any
  other failure. With ``SENDMAIL_SUPPRESSION_ENABLED=false`` the check is skipped (the list is
  still kept up to date). Recipients cluster in a few domains (the partition key), so a domain
  with several recipients in the batch has its partition read in pages of 1,000 entries when it
  holds at most 20 entries per such recipient, and gets point reads otherwise: a batch costs
  requests per domain and per 1,000 listed entries rather than per recipient (docs/benchmarks.md
  has the figures).
- **What takes it off**: an operator, ``DELETE /api/v1/suppressions/{email}``, once the address
  is known to be good again. Nothing expires on its own.

Addresses are stored normalised (trimmed, lower-cased). Table layout (``SendMailSuppressions``,
in the host's storage account): ``PartitionKey`` = the domain, ``RowKey`` = the local part (both
as :func:`sendmail.platform.tables.table_key`), so one domain's entries can be listed together;
properties: the address, the reason, when, and the send, SES message, event type, subtype and
diagnostic of the event that caused it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sendmail.contract.addresses import normalize_address
from sendmail.contract.vocabulary import FailureCode
from sendmail.feedback.ses_events import RecipientEvent, SuppressionReason
from sendmail.platform.tables import LazyTable, TableUnavailable, table_key
from sendmail.sending.results import BatchReport, Delivery

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from sendmail.sending.runner import SendFn

logger = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "SendMailSuppressions"
#: Reads in flight while a batch's recipients are looked up.
LOOKUP_CONCURRENCY = 16
#: A domain with at least this many recipients in a batch has its partition read in pages
#: (1,000 entries a request) instead of one point read per recipient — if the partition is
#: small enough (:func:`_scan_cap`); mailing lists cluster in a few large domains.
SCAN_MIN_RECIPIENTS = 8


def _scan_cap(recipients: int) -> int:
    """Entries a partition read may go through for ``recipients`` addresses before it gives up
    for point reads: 20 per address, one full page at least. Read in pages, an entry costs
    about 0.02 of a point read (measured against Azurite: 0.11 ms against 5.2 ms), so the read
    pays off up to about 45 entries per address; one that gives up has cost at most 20 x 0.02
    = 0.4 point reads per address on top of the point reads."""
    return max(1000, 20 * recipients)


class SuppressionListError(TableUnavailable):
    """The suppression list could not be read or written."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """One address on the list, and the event that put it there."""

    email: str
    reason: SuppressionReason
    created: datetime
    send_id: str | None = None
    message_id: str | None = None
    event_type: str | None = None
    sub_type: str | None = None
    diagnostic: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What the suppression routes answer: never the send or the SES message that caused
        the entry (the list is the operators', a send id is its caller's secret: naming it
        here led an operator-route reader to another caller's recipients)."""
        body: dict[str, Any] = {
            "email": self.email,
            "reason": self.reason,
            "createdTime": self.created.astimezone(UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "eventType": self.event_type,
            "subType": self.sub_type,
            "diagnostic": self.diagnostic,
        }
        return {k: v for k, v in body.items() if v is not None}

    @classmethod
    def from_event(cls, event: RecipientEvent, now: datetime | None = None) -> Suppression | None:
        """The entry ``event`` makes, if it suppresses its recipient."""
        if event.suppress is None:
            return None
        return cls(
            email=normalize_address(event.recipient),
            reason=event.suppress,
            created=now or datetime.now(UTC),
            send_id=event.send_id,
            message_id=event.message_id,
            event_type=event.type,
            sub_type=event.sub_type,
            diagnostic=event.diagnostic,
        )


class SuppressionList(Protocol):
    def get(self, email: str) -> Suppression | None: ...

    def add(self, entry: Suppression) -> bool:
        """Put ``entry`` on the list; False if the address was already on it (kept as it was)."""
        ...

    def remove(self, email: str) -> bool:
        """Take ``email`` off the list; False if it was not on it."""
        ...

    def lookup(self, emails: Sequence[str]) -> dict[str, Suppression]:
        """The listed ones among ``emails``, by normalised address."""
        ...


def skipping_suppressed(send: SendFn, suppressions: SuppressionList) -> SendFn:
    """``send`` for the recipients not on the list; the others fail with ``SUPPRESSED``.

    Same contract as ``send`` (one delivery per recipient, in order; ``on_sent`` with the
    recipient's index in the batch given), so it slots into
    :func:`sendmail.sending.runner.run_batch`.
    """

    def wrapped(recipients: Sequence[str], on_sent: Any) -> BatchReport:
        listed = suppressions.lookup(recipients)
        if not listed:
            return send(recipients, on_sent)
        keep = [i for i, r in enumerate(recipients) if normalize_address(r) not in listed]
        report = send(
            [recipients[i] for i in keep],
            lambda position, message_id: on_sent(keep[position], message_id),
        )
        sent = dict(zip(keep, report.deliveries, strict=True))
        deliveries = [
            sent[i]
            if i in sent
            else Delivery.failed(r, FailureCode.SUPPRESSED, _message(listed[normalize_address(r)]))
            for i, r in enumerate(recipients)
        ]
        logger.info("%d of %d recipients are suppressed: not sent", len(listed), len(recipients))
        return BatchReport(deliveries, rate=report.rate, stalled=report.stalled, stop=report.stop)

    return wrapped


def _message(entry: Suppression) -> str:
    cause = "a hard bounce" if entry.reason == "BOUNCE" else "a complaint"
    day = entry.created.astimezone(UTC).date().isoformat()
    return (
        f"The address is on the suppression list since {day} after {cause}; it was not sent. "
        "An operator can remove it (DELETE /api/v1/suppressions/{email}) once it is known good."
    )


def _split(email: str) -> tuple[str, str]:
    local, _, domain = normalize_address(email).rpartition("@")
    return table_key(domain), table_key(local)


class MemorySuppressionList:
    """A process-local suppression list for tests. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Suppression] = {}
        self.lookups = 0

    def get(self, email: str) -> Suppression | None:
        with self._lock:
            return self._entries.get(normalize_address(email))

    def add(self, entry: Suppression) -> bool:
        with self._lock:
            if entry.email in self._entries:
                return False
            self._entries[entry.email] = entry
            return True

    def remove(self, email: str) -> bool:
        with self._lock:
            return self._entries.pop(normalize_address(email), None) is not None

    def lookup(self, emails: Sequence[str]) -> dict[str, Suppression]:
        with self._lock:
            self.lookups += 1
            found = (self._entries.get(normalize_address(e)) for e in emails)
            return {entry.email: entry for entry in found if entry is not None}


@dataclass
class TableSuppressionList:
    """The suppression list on Azure Table storage (or Azurite); see the module docs."""

    client: TableClient
    concurrency: int = LOOKUP_CONCURRENCY
    _table: LazyTable = field(init=False)

    def __post_init__(self) -> None:
        self._table = LazyTable(self.client)

    def get(self, email: str) -> Suppression | None:
        from azure.core.exceptions import ResourceNotFoundError

        partition, row = _split(email)

        def read() -> Any:
            try:
                return self.client.get_entity(partition, row)
            except ResourceNotFoundError:
                return None

        entity = self._table.call("read", read)
        return _from_entity(entity) if entity is not None else None

    def add(self, entry: Suppression) -> bool:
        from azure.core.exceptions import ResourceExistsError

        partition, row = _split(entry.email)
        entity = {
            "PartitionKey": partition,
            "RowKey": row,
            "Email": entry.email,
            "Reason": entry.reason,
            "CreatedTime": entry.created,
            "SendId": entry.send_id,
            "MessageId": entry.message_id,
            "EventType": entry.event_type,
            "SubType": entry.sub_type,
            "Diagnostic": entry.diagnostic,
        }
        entity = {k: v for k, v in entity.items() if v is not None}

        def create() -> bool:
            try:
                self.client.create_entity(entity)
            except ResourceExistsError:
                return False
            return True

        added: bool = self._table.call("write", create)
        return added

    def remove(self, email: str) -> bool:
        partition, row = _split(email)

        def delete() -> bool:
            if self.get(email) is None:
                return False
            # delete_entity answers success for a missing row too: the read says which it was
            self.client.delete_entity(partition, row)
            return True

        removed: bool = self._table.call("delete", delete)
        return removed

    def lookup(self, emails: Sequence[str]) -> dict[str, Suppression]:
        """Per domain (a partition): its listed entries read in pages when the domain has at
        least :data:`SCAN_MIN_RECIPIENTS` recipients here and its partition turns out no
        larger than :func:`_scan_cap` rows; otherwise one point read per recipient. Domains run
        :attr:`concurrency` at a time."""
        by_domain: dict[str, list[str]] = {}
        for address in dict.fromkeys(normalize_address(e) for e in emails):
            by_domain.setdefault(address.rpartition("@")[2], []).append(address)
        if not by_domain:
            return {}
        tasks: list[tuple[str, list[str]]] = []
        for domain, addresses in by_domain.items():
            if len(addresses) >= SCAN_MIN_RECIPIENTS:
                tasks.append((domain, addresses))
            else:
                tasks.extend(("", [address]) for address in addresses)
        workers = max(1, min(self.concurrency, len(tasks)))
        with ThreadPoolExecutor(workers, thread_name_prefix="suppression") as pool:
            parts = list(pool.map(lambda task: self._lookup_part(*task), tasks))
        return {entry.email: entry for part in parts for entry in part}

    def _lookup_part(self, domain: str, addresses: list[str]) -> list[Suppression]:
        if domain:
            listed = self._scan(domain, _scan_cap(len(addresses)))
            if listed is not None:
                return [listed[a] for a in addresses if a in listed]
        found = (self.get(address) for address in addresses)
        return [entry for entry in found if entry is not None]

    def _scan(self, domain: str, cap: int) -> dict[str, Suppression] | None:
        """Every entry of ``domain``'s partition, or None once it holds more than ``cap``."""
        partition = table_key(domain)
        listed: dict[str, Suppression] = {}

        def read() -> bool:
            rows = self.client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition}, results_per_page=1000
            )
            for count, row in enumerate(rows, start=1):
                if count > cap:
                    return False
                entry = _from_entity(row)
                listed[entry.email] = entry
            return True

        complete: bool = self._table.call("read", read)
        return listed if complete else None


def _from_entity(entity: Mapping[str, Any]) -> Suppression:
    def text(name: str) -> str | None:
        value = entity.get(name)
        return str(value) if value is not None else None

    created = entity.get("CreatedTime")
    reason: SuppressionReason = "COMPLAINT" if entity.get("Reason") == "COMPLAINT" else "BOUNCE"
    return Suppression(
        email=str(entity.get("Email") or ""),
        reason=reason,
        created=created if isinstance(created, datetime) else datetime.now(UTC),
        send_id=text("SendId"),
        message_id=text("MessageId"),
        event_type=text("EventType"),
        sub_type=text("SubType"),
        diagnostic=text("Diagnostic"),
    )


def suppressions_from_environment(
    env: Mapping[str, str] = os.environ, *, table_name: str = DEFAULT_TABLE_NAME
) -> TableSuppressionList:
    """The suppression list in the host's own storage (``AzureWebJobsStorage`` and friends)."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableSuppressionList(table_client(table_name, env))
    except StorageUnavailable as e:
        raise SuppressionListError(f"the suppression list is unavailable: {e}") from e
