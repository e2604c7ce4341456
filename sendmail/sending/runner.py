"""Running one batch through a sender, guarded by the send ledger.

Durable activities run at least once, and no SES or SMTP call is idempotent. Before sending, the
batch asks the ledger which of its recipients were already sent (by an earlier run of the same
batch) and sends only to the others; every success is recorded soon after its send. What is
left is a crash between a send and its record: the calls in flight at that moment, and the
successes not yet written, may be sent twice — the only duplicate window
(see docs/architecture.md).

**Group commit.** With ``group_ms`` > 0 (``SENDMAIL_LEDGER_GROUP_MS``, 50 by default) successes
are gathered for at most that long, or until 100 of them are waiting, and written as one ledger
row (:class:`GroupCommit`, ``SendLedger.record_many``): one round trip per
up to 100 recipients instead of one each, which is most of what a recipient costs in CPU. The
price is the window: a crash may now re-send the successes not yet written too — those of the
last ``group_ms`` plus the write in progress (at 300 recipients/s and 50 ms, about 15 more than
the calls in flight), and never more than 300 (200 waiting, then sending waits for the
writer, and 100 being written).
``group_ms`` = 0 writes each record on the thread that made the send, before the next one
starts.

Every run of a batch is given the whole batch; it sends only to the recipients the ledger holds
no outcome for (neither sent nor failed for good), records final failures too, and returns
counts (:class:`~sendmail.sending.jobs.BatchTally`): the ledger is where each recipient's outcome
lives, not the activity's output. A final failure the ledger could not record (it is failing)
is counted as failed but, having no outcome, is tried again by a later run of the same batch if
there is one: a failure is never a message out, so that costs a call, not a duplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from sendmail.contract.vocabulary import FailureCode
from sendmail.platform import telemetry
from sendmail.sending.jobs import BatchStop, BatchTally, Held
from sendmail.sending.ledger import LedgerError, Recorded, SendLedger
from sendmail.sending.results import BatchReport, Delivery

logger = logging.getLogger(__name__)

OnSent = Callable[[int, str], None]
SendFn = Callable[[Sequence[str], OnSent], BatchReport]

#: The most records written together (one ledger row: ``TableSendLedger.record_many``).
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
    group is not tried); what is not written is kept in ``unrecorded`` (index -> Message-ID: the
    mail is out either way, it is reported as sent and handed to the batch's next run).
    """

    def __init__(self, ledger: SendLedger, key: str, interval: float) -> None:
        self._ledger = ledger
        self._key = key
        self._interval = interval
        self._pending: dict[int, str] = {}
        self._oldest: float | None = None
        self._closed = False
        self._cond = threading.Condition()
        self.unrecorded: dict[int, str] = {}
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
                self.unrecorded.update(self._pending)
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
        # A refused group is tried record by record (one bad entity need not cost the
        # others); the first record that fails too means the store is failing, and the rest of
        # the group is counted without being tried (a hung store would cost minutes each).
        try:
            self._ledger.record_many(self._key, group)
            return
        except Exception:
            logger.warning("batch %s: a group of %d records failed", self._key, len(group))
        items = list(group.items())
        for n, (index, message_id) in enumerate(items):
            try:
                self._ledger.record(self._key, index, message_id)
            except Exception:
                self.unrecorded.update(items[n:])
                return


def run_batch(
    ledger: SendLedger,
    key: str,
    recipients: Sequence[str],
    send: SendFn,
    *,
    settled: Callable[[int], None] | None = None,
    group_ms: float = 0,
    unrecorded: Mapping[int, str] | None = None,
    transport: str = "unknown",
) -> BatchTally:
    """Send to the batch's ``recipients`` that have no outcome yet; record each success (soon
    after its send) and each final failure; count the batch.

    ``unrecorded`` holds what earlier runs of the batch sent but could not record (the ledger
    was failing): they count as sent, are written again first, and are never sent again. What
    this run cannot record comes back in the tally's ``unrecorded`` for the next run (the lane
    carries it): a failing ledger never makes a later run send twice.

    ``settled(n)`` is told how many recipients this run settled — sent now or failed for good,
    not those an earlier run had settled, nor those still pending (the quota reservation's
    count). The same count goes to the metrics (``sendmail.recipients.*``, by ``transport``):
    once per run, never per recipient.
    """
    known = ledger.outcomes(key)
    carried = {i: m for i, m in (unrecorded or {}).items() if i not in known}
    left = _record_again(ledger, key, carried)
    sent_before = sum(1 for r in known.values() if r.sent) + len(carried)
    todo = [i for i in range(len(recipients)) if i not in known and i not in carried]
    if (known or carried) and todo:
        logger.info("batch %s resumed: %d already settled, %d to send", key, len(known), len(todo))
    report: BatchReport | None = None
    sent_now = failed_now = 0
    pending: list[Delivery] = []
    if todo:
        out = _Successes()
        try:
            report, unwritten = _send_recorded(
                ledger, key, [recipients[i] for i in todo], todo, send, group_ms, out
            )
        except BaseException:  # what went out before the error is counted now: a re-run sees it
            telemetry.recipients_settled(transport, out.count, {})  # in the ledger as settled
            raise
        left.update(unwritten)
        if len(report.deliveries) != len(todo):
            raise RuntimeError(f"sender returned {len(report.deliveries)} results for {len(todo)}")
        failures: dict[int, tuple[str, str]] = {}
        for index, delivery in zip(todo, report.deliveries, strict=True):
            if delivery.ok:
                sent_now += 1
            elif delivery.pending:
                pending.append(delivery)
            else:
                failures[index] = (
                    (delivery.code or FailureCode.DELIVERY_UNKNOWN).value,
                    delivery.message or "not sent",
                )
        failed_now = len(failures)
        try:  # what failed for good is final: recorded, never tried again
            ledger.record_failures(key, failures)
        except LedgerError:
            logger.warning("batch %s: %d failures could not be recorded", key, len(failures))
        if settled is not None:
            settled(sent_now + failed_now)
        telemetry.recipients_settled(transport, sent_now, Counter(c for c, _ in failures.values()))
    if left:
        logger.warning("batch %s: %d sends could not be recorded in the ledger", key, len(left))
    last = pending[-1] if pending else None
    canceled = _canceled(known)
    tally = BatchTally(
        sent=sent_before + sent_now,
        failed=len(known) - (sent_before - len(carried)) - canceled + failed_now,
        canceled=canceled,
        pending=len(pending),
        pendingCode=last.code if last is not None else None,
        pendingMessage=last.message if last is not None else None,
        rate=report.rate if report is not None else None,
        stalled=report.stalled if report is not None else False,
        stopped=(
            BatchStop(code=report.stop[0], message=report.stop[1])
            if report is not None and report.stop is not None
            else None
        ),
        unrecorded=left,
    )
    logger.info(
        "batch %s: %d sent, %d failed, %d pending", key, tally.sent, tally.failed, tally.pending
    )
    return tally


class _Successes:
    """How many of a run's sends went out (SES or the SMTP server took them), counted as their
    success is reported: from more than one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


def _record_again(ledger: SendLedger, key: str, carried: Mapping[int, str]) -> dict[int, str]:
    """Write what earlier runs could not; what still cannot be written (kept for later)."""
    if not carried:
        return {}
    try:
        ledger.record_many(key, carried)
    except LedgerError:
        return dict(carried)
    return {}


def _send_recorded(
    ledger: SendLedger,
    key: str,
    recipients: list[str],
    indices: list[int],
    send: SendFn,
    group_ms: float,
    out: _Successes,
) -> tuple[BatchReport, dict[int, str]]:
    """``send`` with every success recorded under its index: grouped (:class:`GroupCommit`)
    or, with ``group_ms`` 0, each on the thread that made the send, before the next starts. The
    report, and the successes that could not be recorded (the mail is out either way: they are
    reported as sent)."""
    lock = threading.Lock()
    unrecorded: dict[int, str] = {}

    def record_now(position: int, message_id: str) -> None:
        out.add()
        # The message is out whatever the ledger says: a failed record must not fail the
        # batch (a retry would then re-send everything sent so far). It only widens the
        # duplicate window for this one recipient, which is logged.
        try:
            ledger.record(key, indices[position], message_id)
        except LedgerError:
            with lock:
                unrecorded[indices[position]] = message_id
                first = len(unrecorded) == 1
            if first:
                logger.warning("batch %s: the send ledger is failing; sending goes on", key)

    if group_ms <= 0:
        return send(recipients, record_now), unrecorded
    group = GroupCommit(ledger, key, group_ms / 1000)

    def record(position: int, message_id: str) -> None:
        out.add()
        group.add(indices[position], message_id)

    try:
        report = send(recipients, record)
    finally:
        group.close()  # before the result: every success is in the ledger first
    return report, {**unrecorded, **group.unrecorded}


def fail_rest(
    ledger: SendLedger,
    key: str,
    size: int,
    code: FailureCode,
    message: str,
    unrecorded: Mapping[int, str] | None = None,
    transport: str = "unknown",
) -> BatchTally:
    """Fail, with ``code``, every recipient of the batch (of ``size``) that has no outcome yet;
    the batch's counts after that. What the ledger holds as sent stays sent, and so does what
    earlier runs sent without recording it (``unrecorded``: written now if the ledger allows)."""
    known = ledger.outcomes(key)
    carried = {i: m for i, m in (unrecorded or {}).items() if i not in known}
    left = _record_again(ledger, key, carried)
    rest = {i: (code.value, message) for i in range(size) if i not in known and i not in carried}
    ledger.record_failures(key, rest)
    telemetry.recipients_settled(transport, 0, {code.value: len(rest)} if rest else {})
    sent = sum(1 for r in known.values() if r.sent) + len(carried)
    canceled = _canceled(known) + (len(rest) if code is FailureCode.CANCELED else 0)
    logger.info("batch %s: %d failed as %s", key, len(rest), code.value)
    return BatchTally(sent=sent, failed=size - sent - canceled, canceled=canceled, unrecorded=left)


def _canceled(known: Mapping[int, Recorded]) -> int:
    """How many of the recorded outcomes are ``CANCELED`` (counted apart from failures)."""
    return sum(1 for r in known.values() if r.code == FailureCode.CANCELED.value)


def held_tally(
    ledger: SendLedger,
    key: str,
    size: int,
    unrecorded: Mapping[int, str],
    held: Held,
    seq: int = 0,
) -> BatchTally:
    """The counts of a batch (of ``size``) that does not run because the send is paused or
    canceled: what the ledger holds (and earlier runs sent without recording), the rest
    pending; ``seq`` is the control change that held it."""
    known = ledger.outcomes(key)
    carried = {i: m for i, m in unrecorded.items() if i not in known}
    sent = sum(1 for r in known.values() if r.sent) + len(carried)
    canceled = _canceled(known)
    failed = len(known) + len(carried) - sent - canceled
    return BatchTally(
        sent=sent,
        failed=failed,
        canceled=canceled,
        pending=size - len(known) - len(carried),
        unrecorded=dict(carried),
        held=held,
        controlSeq=seq,
    )
