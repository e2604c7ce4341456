"""The suppression list: addresses company mail (aws-send) no longer goes to, and why.

SES reviews, and then pauses, accounts whose bounce or complaint rate climbs; mailing an address
that hard-bounced or complained again only raises both. And a person who unsubscribed must get no
more marketing mail (RFC 8058, Gmail's and Yahoo's bulk-sender rules, Korea's Article 50). So an
address carries up to two **entries**, each with its reason:

- **a delivery entry** (``BOUNCE`` or ``COMPLAINT``): a ``Permanent`` bounce, or a complaint
  other than ``not-spam`` (:mod:`sendmail.feedback.ses_events` decides), arriving through the
  events route. The first event wins: a later bounce or complaint for an address that has a
  delivery entry changes nothing, so ``createdTime`` is when it was first suppressed and the
  entry names the event that caused it.
- **an unsubscribe entry** (``UNSUBSCRIBED``): the recipient used a one-click unsubscribe link
  (:mod:`sendmail.feedback.unsubscribes`). Repeating it changes nothing.

The two are independent: an unsubscribe never hides a later hard bounce, nor a bounce an
unsubscribe.

- **What it does**: :func:`skipping_suppressed` wraps an SES batch's send. Before SES is called,
  the batch's recipients are looked up (:meth:`TableSuppressionList.lookup`); one with a
  delivery entry is not sent and fails with ``SUPPRESSED`` (unless
  ``SENDMAIL_SUPPRESSION_ENABLED=false``: the list is still kept up to date); in a marketing
  send, one with an unsubscribe entry fails with ``UNSUBSCRIBED`` — whatever
  ``SENDMAIL_SUPPRESSION_ENABLED`` says: an unsubscribe is the recipient's wish, not an
  account-health measure. Both apply: ``SUPPRESSED``. Transactional sends still reach
  unsubscribed addresses (a password reset must arrive). When neither check is asked for, no
  lookup is made. A lookup that fails raises: nothing is sent that could not be checked, and the
  activity is retried like any other failure.
- **What it costs**: recipients cluster in a few domains (the partition key), so a domain with
  several recipients in the batch has its partition read in pages of 1,000 rows when it holds
  at most 20 rows per such recipient, and every other recipient costs one request: a batch costs
  requests per domain and per 1,000 listed rows rather than per recipient (docs/benchmarks.md
  has the figures). Both of an address's entries come back in that one request (below).
- **What takes it off**: an operator, ``DELETE /api/v1/suppressions/{email}`` (every entry, or
  the one ``?reason=`` names), once the address is known to be good again or the recipient
  asked to be mailed again. Nothing expires on its own.

Addresses are stored normalised (trimmed, lower-cased, the domain in ASCII form). Table layout
(``SendMailSuppressions``, in the host's storage account): ``PartitionKey`` = the domain,
properties: the address, the reason, when, and the send, SES message, event type, subtype and
diagnostic of the event that caused it. ``RowKey``:

- a delivery entry: the local part (both keys as :func:`sendmail.platform.tables.table_key`) —
  the one row per address this list had before unsubscribes, so rows written then read as they
  did (any reason but ``COMPLAINT`` in such a row reads as ``BOUNCE``);
- an unsubscribe entry: the same + :data:`UNSUBSCRIBED_ROW_SUFFIX` (``!unsubscribed``).
  ``table_key`` never writes ``!`` (its output is ``[A-Za-z0-9._:~-]``), so no local part's key
  is ever an unsubscribe row's, and ``!`` sorts below every character ``table_key`` writes: the
  rows whose keys lie from ``key`` to ``key + '"'`` (the character after ``!``) are exactly this
  address's entries. One range query reads both where one point read read the one row before;
  against Azurite it costs what a point read costs in a 200-row partition (2.0 ms against 2.0
  ms) and twice that in a 5,000-row one (3.0 against 1.5 ms: Azurite scans the partition; Azure
  reads the range from its index).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
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
#: The reasons of a delivery entry (one per address, the first event wins).
DELIVERY_REASONS: frozenset[SuppressionReason] = frozenset({"BOUNCE", "COMPLAINT"})
#: Appended to an address's row key for its unsubscribe entry (see the module docs).
UNSUBSCRIBED_ROW_SUFFIX = "!unsubscribed"


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
    """One entry of an address on the list: why, and the event that put it there."""

    email: str
    reason: SuppressionReason
    created: datetime
    send_id: str | None = None
    message_id: str | None = None
    event_type: str | None = None
    sub_type: str | None = None
    diagnostic: str | None = None

    @property
    def delivery(self) -> bool:
        """A bounce or a complaint (not an unsubscribe)."""
        return self.reason in DELIVERY_REASONS

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


def listing_json(entries: Sequence[Suppression]) -> dict[str, Any]:
    """What ``GET /api/v1/suppressions/{email}`` answers for an address's ``entries`` (as
    :meth:`SuppressionList.get` gives them, the delivery entry first): the first entry's fields
    at the top, as before an address could carry several, and ``entries`` with every one."""
    if not entries:
        raise ValueError("an address on the list has at least one entry")
    return {
        **entries[0].to_json(),
        "entries": [
            {k: v for k, v in entry.to_json().items() if k != "email"} for entry in entries
        ],
    }


class SuppressionList(Protocol):
    def get(self, email: str) -> list[Suppression]:
        """The address's entries, the delivery entry first; empty when it is not listed."""
        ...

    def add(self, entry: Suppression) -> bool:
        """Put ``entry`` on the list; False (and nothing changed) if the address already has an
        entry of its kind: a delivery entry for a bounce or a complaint, an unsubscribe entry
        for an unsubscribe."""
        ...

    def remove(self, email: str, reason: SuppressionReason | None = None) -> bool:
        """Take ``email``'s entries off the list (only the one with ``reason`` when given);
        False if there was none to take off."""
        ...

    def lookup(self, emails: Sequence[str]) -> dict[str, list[Suppression]]:
        """The listed ones among ``emails``, by normalised address, each with all its entries
        (the delivery entry first)."""
        ...


def skipping_suppressed(
    send: SendFn,
    suppressions: SuppressionList,
    *,
    marketing: bool = False,
    bounces: bool = True,
) -> SendFn:
    """``send`` for the recipients the list does not stop; the others fail without reaching it.

    ``bounces`` (``SENDMAIL_SUPPRESSION_ENABLED``): a recipient with a delivery entry fails with
    ``SUPPRESSED``. ``marketing``: a recipient with an unsubscribe entry fails with
    ``UNSUBSCRIBED``, whatever ``bounces`` says. Both: ``SUPPRESSED``. Neither: ``send`` itself,
    no lookup at all.

    Same contract as ``send`` (one delivery per recipient, in order; ``on_sent`` with the
    recipient's index in the batch given), so it slots into
    :func:`sendmail.sending.runner.run_batch`.
    """
    if not bounces and not marketing:
        return send

    def refusal(entries: Iterable[Suppression]) -> tuple[FailureCode, str] | None:
        unsubscribed = None
        for entry in entries:
            if entry.delivery and bounces:
                return FailureCode.SUPPRESSED, _message(entry)
            if entry.reason == "UNSUBSCRIBED" and marketing:
                unsubscribed = FailureCode.UNSUBSCRIBED, _unsubscribed_message(entry)
        return unsubscribed

    def wrapped(recipients: Sequence[str], on_sent: Any) -> BatchReport:
        listed = suppressions.lookup(recipients)
        refused: dict[int, tuple[FailureCode, str]] = {}
        if listed:
            for index, recipient in enumerate(recipients):
                found = refusal(listed.get(normalize_address(recipient), ()))
                if found is not None:
                    refused[index] = found
        if not refused:
            return send(recipients, on_sent)
        keep = [i for i in range(len(recipients)) if i not in refused]
        report = send(
            [recipients[i] for i in keep],
            lambda position, message_id: on_sent(keep[position], message_id),
        )
        sent = dict(zip(keep, report.deliveries, strict=True))
        deliveries = [
            sent[i] if i in sent else Delivery.failed(r, *refused[i])
            for i, r in enumerate(recipients)
        ]
        codes = [code for code, _ in refused.values()]
        logger.info(
            "%d of %d recipients not sent: %d suppressed, %d unsubscribed",
            len(refused),
            len(recipients),
            codes.count(FailureCode.SUPPRESSED),
            codes.count(FailureCode.UNSUBSCRIBED),
        )
        return BatchReport(deliveries, rate=report.rate, stalled=report.stalled, stop=report.stop)

    return wrapped


def _day(entry: Suppression) -> str:
    return entry.created.astimezone(UTC).date().isoformat()


def _message(entry: Suppression) -> str:
    cause = "a hard bounce" if entry.reason == "BOUNCE" else "a complaint"
    return (
        f"The address is on the suppression list since {_day(entry)} after {cause}; it was not "
        "sent. An operator can remove it (DELETE /api/v1/suppressions/{email}) once it is known "
        "good."
    )


def _unsubscribed_message(entry: Suppression) -> str:
    return (
        f"The recipient unsubscribed on {_day(entry)}; marketing mail is not sent to it "
        "(transactional mail still is)."
    )


def _ordered(entries: Iterable[Suppression]) -> list[Suppression]:
    """The delivery entry first, then the unsubscribe entry."""
    return sorted(entries, key=lambda entry: not entry.delivery)


def _split(email: str) -> tuple[str, str]:
    local, _, domain = normalize_address(email).rpartition("@")
    return table_key(domain), table_key(local)


def _row_key(address_key: str, reason: SuppressionReason) -> str:
    return address_key if reason in DELIVERY_REASONS else address_key + UNSUBSCRIBED_ROW_SUFFIX


class MemorySuppressionList:
    """A process-local suppression list for tests. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (address, True for the delivery entry / False for the unsubscribe entry) -> entry
        self._entries: dict[tuple[str, bool], Suppression] = {}
        self.lookups = 0

    def get(self, email: str) -> list[Suppression]:
        address = normalize_address(email)
        with self._lock:
            return self._get(address)

    def _get(self, address: str) -> list[Suppression]:
        found = (self._entries.get((address, delivery)) for delivery in (True, False))
        return [entry for entry in found if entry is not None]

    def add(self, entry: Suppression) -> bool:
        with self._lock:
            key = (entry.email, entry.delivery)
            if key in self._entries:
                return False
            self._entries[key] = entry
            return True

    def remove(self, email: str, reason: SuppressionReason | None = None) -> bool:
        address = normalize_address(email)
        with self._lock:
            doomed = [e for e in self._get(address) if reason in (None, e.reason)]
            for entry in doomed:
                del self._entries[(address, entry.delivery)]
            return bool(doomed)

    def lookup(self, emails: Sequence[str]) -> dict[str, list[Suppression]]:
        with self._lock:
            self.lookups += 1
            found = {}
            for address in dict.fromkeys(normalize_address(e) for e in emails):
                entries = self._get(address)
                if entries:
                    found[address] = entries
            return found


@dataclass
class TableSuppressionList:
    """The suppression list on Azure Table storage (or Azurite); see the module docs."""

    client: TableClient
    concurrency: int = LOOKUP_CONCURRENCY
    _table: LazyTable = field(init=False)

    def __post_init__(self) -> None:
        self._table = LazyTable(self.client)

    def get(self, email: str) -> list[Suppression]:
        """One request: the range of the address's rows (see the module docs)."""
        partition, row = _split(email)

        def read() -> list[Suppression]:
            rows = self.client.query_entities(
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                parameters={"pk": partition, "low": row, "high": row + '"'},
            )
            return _ordered(_from_entity(r) for r in rows)

        found: list[Suppression] = self._table.call("read", read)
        return found

    def add(self, entry: Suppression) -> bool:
        from azure.core.exceptions import ResourceExistsError

        partition, row = _split(entry.email)
        entity = {
            "PartitionKey": partition,
            "RowKey": _row_key(row, entry.reason),
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

    def remove(self, email: str, reason: SuppressionReason | None = None) -> bool:
        partition, row = _split(email)
        # delete_entity answers success for a missing row too: the read says what there is
        doomed = [e for e in self.get(email) if reason in (None, e.reason)]

        def delete() -> bool:
            for entry in doomed:
                self.client.delete_entity(partition, _row_key(row, entry.reason))
            return bool(doomed)

        removed: bool = self._table.call("delete", delete)
        return removed

    def lookup(self, emails: Sequence[str]) -> dict[str, list[Suppression]]:
        """Per domain (a partition): its listed entries read in pages when the domain has at
        least :data:`SCAN_MIN_RECIPIENTS` recipients here and its partition turns out no
        larger than :func:`_scan_cap` rows; otherwise one read per recipient (:meth:`get`).
        Domains run :attr:`concurrency` at a time."""
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
        return {address: entries for part in parts for address, entries in part}

    def _lookup_part(
        self, domain: str, addresses: list[str]
    ) -> list[tuple[str, list[Suppression]]]:
        if domain:
            listed = self._scan(domain, _scan_cap(len(addresses)))
            if listed is not None:
                return [(a, _ordered(listed[a])) for a in addresses if a in listed]
        found = ((address, self.get(address)) for address in addresses)
        return [(address, entries) for address, entries in found if entries]

    def _scan(self, domain: str, cap: int) -> dict[str, list[Suppression]] | None:
        """Every entry of ``domain``'s partition, or None once it holds more than ``cap``."""
        partition = table_key(domain)
        listed: dict[str, list[Suppression]] = {}

        def read() -> bool:
            rows = self.client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition}, results_per_page=1000
            )
            for count, row in enumerate(rows, start=1):
                if count > cap:
                    return False
                entry = _from_entity(row)
                listed.setdefault(entry.email, []).append(entry)
            return True

        complete: bool = self._table.call("read", read)
        return listed if complete else None


def _from_entity(entity: Mapping[str, Any]) -> Suppression:
    def text(name: str) -> str | None:
        value = entity.get(name)
        return str(value) if value is not None else None

    created = entity.get("CreatedTime")
    reason: SuppressionReason = (
        "UNSUBSCRIBED"
        if str(entity.get("RowKey", "")).endswith(UNSUBSCRIBED_ROW_SUFFIX)
        else "COMPLAINT"
        if entity.get("Reason") == "COMPLAINT"
        else "BOUNCE"
    )
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
