"""Running one batch through a sender, guarded by the send ledger.

Durable activities run at least once, and no SES or SMTP call is idempotent. Before sending, the
batch asks the ledger which of its recipients were already sent (by an earlier run of the same
batch) and sends only to the others; every success is recorded right after its send, on the
thread that made it. What is left is a crash between a send and its record: the calls in flight
at that moment may be sent twice, and are the only duplicate window (see docs/architecture.md).

A run may carry only some recipients of the batch (those an earlier run left pending), with
their indices; the result then says nothing about the others, which earlier runs settled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sendmail.sending.jobs import BatchResult
from sendmail.sending.ledger import LedgerError, SendLedger
from sendmail.sending.results import BatchReport, Delivery

logger = logging.getLogger(__name__)

OnSent = Callable[[int, str], None]
SendFn = Callable[[Sequence[str], OnSent], BatchReport]


def run_batch(
    ledger: SendLedger,
    key: str,
    recipients: Sequence[str],
    send: SendFn,
    *,
    indices: Sequence[int] | None = None,
    size: int | None = None,
    settled: Callable[[int], None] | None = None,
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

        def record(position: int, message_id: str) -> None:
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

        report = send([address[i] for i in todo], record)
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
