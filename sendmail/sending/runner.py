"""Running one batch through a sender, guarded by the send ledger.

Durable activities run at least once, and no SES or SMTP call is idempotent. Before sending, the
batch asks the ledger which of its recipients were already sent (by an earlier run of the same
batch) and sends only to the others; every success is recorded soon after its send. What is
left is a crash between a send and its record: the calls in flight at that moment, and the
successes not yet written, may be sent twice — the only duplicate window
(see docs/architecture.md).

**Group commit.** With ``group_ms`` > 0 (``SENDMAIL_LEDGER_GROUP_MS``, 50 by default) successes
are gathered for at most that long, or until 100 of them (a table transaction's limit) are
waiting, and written as one entity group transaction (:class:`GroupCommit`): one round trip per
up to 100 recipients instead of one each, which is most of what a recipient costs in CPU. The
price is the window: a crash may now re-send the successes not yet written too — those of the
last ``group_ms`` plus the write in progress (at 300 recipients/s and 50 ms, about 15 more than
the calls in flight), and never more than 300 (200 waiting, then sending waits for the
writer, and 100 being written).
``group_ms`` = 0 writes each record on the thread that made the send, before the next one
starts.

A run may carry only some recipients of the batch (those an earlier run left pending), with
their indices; the result then says nothing about the others, which earlier runs settled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from sendmail.sending.jobs import BatchResult
from sendmail.sending.ledger import LedgerError, SendLedger
from sendmail.sending.results import BatchReport, Delivery

logger = logging.getLogger(__name__)

OnSent = Callable[[int, str], None]
SendFn = Callable[[Sequence[str], OnSent], BatchReport]

#: The most records one entity group transaction takes (Azure Tables: 100 operations).
GROUP_SIZE = 100
#: Records waiting beyond which ``add`` waits for the writer (back-pressure).
MAX_WAITING = 2 * GROUP_SIZE
#: How long :meth:`GroupCommit.close` waits for the writer; what is left is counted unwritten.
CLOSE_TIMEOUT_SECONDS = 120.0

_unwritten_lock = threading.Lock()
_unwritten = 0


def _count_unwritten(change: int) -> None:
    global _unwritten  # noqa: PLW0603 (one process-wide gauge, like ses.calls_in_flight)
    with _unwritten_lock:
        _unwritten += change


def unwritten_records() -> int:
    """Successes of this process gathered for the ledger and not yet written. With
    :func:`sendmail.sending.ses.calls_in_flight`, what a crash now could mail twice."""
    with _unwritten_lock:
        return _unwritten


class GroupCommit:
    """Ledger records of one batch gathered and written in groups by a thread of its own.

    A group is written when :data:`GROUP_SIZE` records wait or ``interval`` seconds after the
    oldest waiting one arrived, and everything left at :meth:`close`. ``add`` blocks only when
    :data:`MAX_WAITING` records wait (the writer is behind: the sending threads slow down
    rather than let the crash window grow without bound). A group the ledger refuses is written
    again record by record until one of those fails too (the store is down: the rest of the
    group is not tried); what is not written is counted in ``unrecorded`` (the mail is out
    either way: it is reported as sent).
    """

    def __init__(self, ledger: SendLedger, key: str, interval: float) -> None:
        self._ledger = ledger
        self._key = key
        self._interval = interval
        self._pending: dict[int, str] = {}
        self._oldest: float | None = None
        self._closed = False
        self._cond = threading.Condition()
        self.unrecorded = 0
        self.groups = 0
        self._thread = threading.Thread(target=self._run, name=f"ledger-{key}", daemon=True)
        self._thread.start()

    def add(self, index: int, message_id: str) -> None:
        with self._cond:
            while len(self._pending) >= MAX_WAITING and not self._closed:
                self._cond.wait()
            first = not self._pending
            if first:
                self._oldest = time.monotonic()
            if index not in self._pending:
                _count_unwritten(1)
            self._pending[index] = message_id
            if first or len(self._pending) >= GROUP_SIZE:
                self._cond.notify()  # the writer starts its interval, or writes a full group

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write what waits and stop: returns once every record was written or counted, or
        after ``timeout`` with what is still waiting counted as unrecorded (a hung store must
        not hold the batch past its function timeout; the writer may still write it later)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                left = len(self._pending)
                self.unrecorded += left
            logger.warning(
                "batch %s: the ledger writer is stuck; %d not waited for", self._key, left
            )

    def _take(self) -> dict[int, str] | None:
        """The next group, waiting for it; None once closed and empty."""
        with self._cond:
            while True:
                if len(self._pending) >= GROUP_SIZE or (self._closed and self._pending):
                    break
                if self._closed:
                    return None
                if self._pending and self._oldest is not None:
                    left = self._oldest + self._interval - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._cond.wait()
            group = dict(list(self._pending.items())[:GROUP_SIZE])
            for index in group:
                del self._pending[index]
            self._oldest = time.monotonic() if self._pending else None
            self._cond.notify_all()  # room again for senders held back by add()
            return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            self.groups += 1
            try:
                self._write(group)
            finally:
                _count_unwritten(-len(group))

    def _write(self, group: dict[int, str]) -> None:
        # A refused transaction is tried record by record (one bad entity need not cost the
        # others); the first record that fails too means the store is failing, and the rest of
        # the group is counted without being tried (a hung store would cost minutes each).
        try:
            self._ledger.record_many(self._key, group)
            return
        except Exception:
            logger.warning("batch %s: a group of %d records failed", self._key, len(group))
        for n, (index, message_id) in enumerate(group.items()):
            try:
                self._ledger.record(self._key, index, message_id)
            except Exception:
                self.unrecorded += len(group) - n
                return


def run_batch(
    ledger: SendLedger,
    key: str,
    recipients: Sequence[str],
    send: SendFn,
    *,
    indices: Sequence[int] | None = None,
    size: int | None = None,
    settled: Callable[[int], None] | None = None,
    group_ms: float = 0,
) -> BatchResult:
    """Send to ``recipients`` (at ``indices`` in a batch of ``size``; by default the whole
    batch, in order) unless the ledger knows them as sent. The result covers these indices.

    ``settled(n)`` is told how many recipients this run settled — sent now or failed for good,
    not those an earlier run had sent, nor those still pending (the quota reservation's count).
    """
    positions = list(indices) if indices is not None else list(range(len(recipients)))
    if len(positions) != len(recipients):
        raise ValueError(f"{len(recipients)} recipients for {len(positions)} indices")
    batch_size = size if size is not None else len(recipients)
    address = dict(zip(positions, recipients, strict=True))
    already = ledger.sent(key)
    outcome: dict[int, Delivery] = {
        i: Delivery.sent(address[i], already[i]) for i in positions if i in already
    }
    todo = [i for i in positions if i not in already]
    if outcome and todo:
        logger.info("batch %s resumed: %d already sent, %d to send", key, len(outcome), len(todo))
    report: BatchReport | None = None
    if todo:
        lock = threading.Lock()
        unrecorded = 0

        def record_now(position: int, message_id: str) -> None:
            # The message is out whatever the ledger says: a failed record must not fail the
            # batch (a retry would then re-send everything sent so far). It only widens the
            # duplicate window for this one recipient, which is logged.
            nonlocal unrecorded
            try:
                ledger.record(key, todo[position], message_id)
            except LedgerError:
                with lock:
                    unrecorded += 1
                    first = unrecorded == 1
                if first:
                    logger.warning("batch %s: the send ledger is failing; sending goes on", key)

        group = GroupCommit(ledger, key, group_ms / 1000) if group_ms > 0 else None
        try:
            if group is not None:
                gathered = group

                def record(position: int, message_id: str) -> None:
                    gathered.add(todo[position], message_id)

                report = send([address[i] for i in todo], record)
            else:
                report = send([address[i] for i in todo], record_now)
        finally:
            if group is not None:
                group.close()  # before the result: every success is in the ledger first
                unrecorded += group.unrecorded
        if len(report.deliveries) != len(todo):
            raise RuntimeError(f"sender returned {len(report.deliveries)} results for {len(todo)}")
        outcome.update(zip(todo, report.deliveries, strict=True))
        if settled is not None:
            settled(sum(1 for d in report.deliveries if not d.pending))
        if unrecorded:
            logger.warning(
                "batch %s: %d sends could not be recorded in the ledger", key, unrecorded
            )
    result = BatchResult.from_outcome(batch_size, outcome, report)
    logger.info(
        "batch %s: %d sent, %d failed, %d pending",
        key,
        sum(1 for m in result.messageIds if m is not None),
        len(result.failures),
        len(result.pending),
    )
    return result
