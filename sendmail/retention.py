"""Retention: what a send leaves behind is kept ``SENDMAIL_RETENTION_DAYS`` after it finished, and
no longer (Korea's PIPA and the GDPR both ask for a limit; storage and history queries stop
growing without one).

**What goes, per send** whose record says it finished (``finished``) before ``now - days``, in
this order:

1. its record is marked ``purging`` (:meth:`~sendmail.sending.sends.SendsTable.mark_purging`):
   from then on the status, recipients, events and control routes answer 404 "No send with id
   ... exists.", as they will once it is gone — so a purge stopped half-way (a crash, the run's
   time budget) never leaves a send that reads as if it had fewer recipients, events or results;
2. the Durable histories of every lane and of the parent (:meth:`Histories.purge`: in Azure
   Storage that is every row of the instance's history partition — earlier ``continue_as_new``
   generations included — its large-message blobs and its instances row:
   Azure/durabletask, ``AzureTableTrackingStore.DeleteAllDataForOrchestrationInstance``, which
   reads the history with ``expectedExecutionId: null``);
3. the list and content blobs (``sendmail-sends``, ``{list_ref}/…``);
4. the ledger rows (every batch partition ``{id}:…``), a page at a time;
5. the events (``SendMailEvents``: rows, markers and counters), a page at a time;
6. the record itself, last.

Every step is idempotent, so the next run finds a marked record (``expired`` yields every record
being purged, whenever it finished) and does the steps again: what is already gone costs a
query. **Besides sends**: idempotency records past their TTL (they name nothing any more) and the
webhook poison queue's messages older than the limit (the host sends them there with Storage's
default time to live, 7 days, and they carry the event's body: a recipient's address).

**Never purged**: the suppression list (an address that bounced or complained, or whose owner
unsubscribed, must stay suppressed: forgetting it is the harm), the SNS message ids acted on
(no personal data; what makes a replay harmless). **Never touched**: a send whose record has no
``finished`` (scheduled, running, paused however long — and one whose orchestration was
terminated by hand before its last step: left to an operator; one that failed is finished by
its ``send_failed`` step, with its ledger's counts, and purged as any other), a send whose
orchestration still runs (counted in ``kept_running``: its record says finished, its parent has a
step left), and a send without a record.

**Bounded**: a run starts no new page of work after ``budget_seconds``; a send not finished then
stays marked and is finished by the next run. A send that fails (a storage error) is logged and
counted, and the run goes on with the others. The counts (:class:`Purged`) are what the run
logs: counts and ids, never an address.

Stores and the Durable client come in as arguments (:class:`Stores`, :class:`Histories`): the
timer (``api/retention.py``) builds them, tests hand in Azurite's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sendmail.platform.blobs import BlobStore
from sendmail.sending.lists import delete_send
from sendmail.sending.sends import SendRecord, SendsTable

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

logger = logging.getLogger(__name__)

#: Rows a purge step deletes before the run looks at its time again.
PAGE = 1000
#: Messages received from the poison queue at once (the most Storage gives).
POISON_PAGE = 32
#: How long a received poison message stays invisible while it is judged (a young one is made
#: visible again at once).
POISON_HIDE_SECONDS = 30


class Histories(Protocol):
    """The send's Durable orchestrations (the timer's Durable client)."""

    def instances(self, send_id: str, lanes: int) -> list[str]:
        """The instance ids of the send: its lanes, then the parent."""
        ...

    def running(self, instance_id: str) -> bool:
        """Whether the instance exists and has not ended."""
        ...

    def purge(self, instance_id: str) -> int:
        """Delete the instance's history; how many instances that was (0: none)."""
        ...


@runtime_checkable
class LedgerRows(Protocol):
    def purge(self, instance_id: str, limit: int | None = None) -> int: ...


@runtime_checkable
class EventRows(Protocol):
    def purge(self, send_id: str, limit: int | None = None) -> int: ...


@runtime_checkable
class ExpiringKeys(Protocol):
    def purge_expired(self, now: datetime, limit: int | None = None) -> int: ...


class PoisonMessages(Protocol):
    def purge_before(self, cutoff: datetime, limit: int | None = None) -> int:
        """Delete messages inserted before ``cutoff`` (at most ``limit``); how many."""
        ...


@dataclass(frozen=True)
class Stores:
    sends: SendsTable
    blobs: BlobStore
    ledger: LedgerRows
    events: EventRows
    idempotency: ExpiringKeys | None = None
    poison: PoisonMessages | None = None


@dataclass
class Purged:
    """What one run did."""

    #: Sends gone for good (their record deleted).
    sends: int = 0
    #: Durable instances whose history was deleted (lanes and parents).
    instances: int = 0
    blobs: int = 0
    #: Ledger records (a group row holds up to 100).
    ledger: int = 0
    #: Event-store rows (events, markers, counters).
    events: int = 0
    idempotency: int = 0
    poison: int = 0
    #: Sends expired by their record whose orchestration had not ended: left alone.
    kept_running: int = 0
    #: Sends whose purge failed this run (logged; the next run tries again).
    failed: int = 0
    #: The run stopped at its time budget with work left.
    unfinished: bool = False
    seconds: float = field(default=0.0, compare=False)

    @property
    def rows(self) -> int:
        """Everything deleted but whole sends and instances (blobs, records, rows, messages)."""
        return self.blobs + self.ledger + self.events + self.idempotency + self.poison

    def summary(self) -> str:
        counts = ", ".join(
            f"{f.name} {getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("unfinished", "seconds")
        )
        left = "; stopped at its time budget" if self.unfinished else ""
        return f"{counts} in {self.seconds:.1f} s{left}"


class _Deadline:
    def __init__(self, budget_seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start = clock()
        self._end = self._start + budget_seconds

    def left(self) -> bool:
        return self._clock() < self._end

    def elapsed(self) -> float:
        return self._clock() - self._start


def purge_expired(
    stores: Stores,
    histories: Histories,
    *,
    now: datetime,
    days: float,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Purged:
    """One retention run (see the module docs): expired idempotency records and poison messages,
    then every send finished before ``now - days`` (and every send being purged), until
    ``budget_seconds`` have passed. Errors of the scan itself are raised (the run fails, the
    next one starts over); a send's own failure is counted and the run goes on."""
    purged = Purged()
    deadline = _Deadline(budget_seconds, clock)
    cutoff = now - timedelta(days=days)
    keys, poison = stores.idempotency, stores.poison
    if keys is not None:
        purged.idempotency = _pages(deadline, lambda: keys.purge_expired(now, PAGE))
    if poison is not None:
        purged.poison = _pages(deadline, lambda: poison.purge_before(cutoff, PAGE))
    for record in stores.sends.expired(cutoff):
        if not deadline.left():
            purged.unfinished = True
            break
        try:
            done = _purge_send(stores, histories, record, now, deadline, purged)
        except Exception:
            purged.failed += 1
            logger.exception("retention: send %s not purged this run", record.id)
            continue
        if not done:
            purged.unfinished = True
            break
    purged.seconds = deadline.elapsed()
    return purged


def _pages(deadline: _Deadline, page: Callable[[], int]) -> int:
    """Call ``page`` until it deletes nothing or the time is up; the total."""
    total = 0
    while deadline.left():
        deleted = page()
        total += deleted
        if deleted == 0:
            break
    return total


def _purge_send(
    stores: Stores,
    histories: Histories,
    record: SendRecord,
    now: datetime,
    deadline: _Deadline,
    purged: Purged,
) -> bool:
    """Purge one send; False when the time ran out before it was gone (it stays marked)."""
    instances = histories.instances(record.id, record.lanes)
    if record.purging is None:
        if histories.running(instances[-1]):
            purged.kept_running += 1
            logger.warning(
                "retention: send %s finished but its orchestration runs: kept", record.id
            )
            return True
        if stores.sends.mark_purging(record.id, now) is None:
            return True  # deleted meanwhile: nothing of it is left to find
    for instance in instances:
        purged.instances += histories.purge(instance)
    if record.list_ref:
        purged.blobs += delete_send(stores.blobs, record.list_ref)
    for rows, name in ((stores.ledger, "ledger"), (stores.events, "events")):
        while True:
            if not deadline.left():
                return False
            deleted = rows.purge(record.id, PAGE)
            setattr(purged, name, getattr(purged, name) + deleted)
            if deleted == 0:
                break
    stores.sends.delete(record.id)
    purged.sends += 1
    logger.debug("retention: send %s purged", record.id)
    return True


class StoragePoisonQueue:
    """A poison queue in Azure Storage (or Azurite): messages older than a time are deleted.

    Storage deletes a message only with the pop receipt of a receive, so: peek at the front (a
    read that hides nothing); if it holds a message inserted before the cutoff, receive a page
    (hidden for :data:`POISON_HIDE_SECONDS`), delete the old ones and make the others visible
    again at once, and go on while pages hold old messages. Messages are in insertion order
    (near enough: Storage does not promise it), so a run stops at the first page of young ones.
    """

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    def purge_before(self, cutoff: datetime, limit: int | None = None) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        deleted = 0
        try:
            while limit is None or deleted < limit:
                front = self._client.peek_messages(max_messages=POISON_PAGE)
                if not any(m.inserted_on is not None and m.inserted_on < cutoff for m in front):
                    break
                old = 0
                for message in self._client.receive_messages(
                    messages_per_page=POISON_PAGE,
                    max_messages=POISON_PAGE,
                    visibility_timeout=POISON_HIDE_SECONDS,
                ):
                    if message.inserted_on is not None and message.inserted_on < cutoff:
                        self._client.delete_message(message)
                        old += 1
                    else:
                        self._client.update_message(message, visibility_timeout=0)
                deleted += old
                if old == 0:
                    break
        except ResourceNotFoundError:  # no poison queue: nothing was ever poisoned
            pass
        return deleted


def poison_queue_from_environment(env: Mapping[str, str] = os.environ) -> StoragePoisonQueue:
    """The webhook queue's poison queue (``sendmail-webhooks-poison``: the host's name for it,
    ``{queue}-poison``) in the host's storage. No network I/O."""
    from sendmail.feedback.webhooks.outbox import QUEUE_NAME
    from sendmail.platform.storage import queue_client

    return StoragePoisonQueue(queue_client(f"{QUEUE_NAME}-poison", env))
