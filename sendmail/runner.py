"""Running one batch through a sender, guarded by the send ledger.

Durable activities run at least once, and no SES or SMTP call is idempotent. Before sending, the
batch asks the ledger which of its recipients were already sent (by an earlier attempt of the same
activity) and sends only to the others; every success is recorded right after the send. What is
left is a crash between a send and its record: that one message per connection may be sent twice,
and is the only duplicate window (see docs/architecture.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sendmail.jobs import BatchResult
from sendmail.ledger import LedgerError, SendLedger
from sendmail.results import Delivery

logger = logging.getLogger(__name__)

OnSent = Callable[[int, str], None]
SendFn = Callable[[Sequence[str], OnSent], list[Delivery]]


def run_batch(ledger: SendLedger, key: str, recipients: Sequence[str], send: SendFn) -> BatchResult:
    """Send to the recipients of one batch that the ledger does not know as sent."""
    already = ledger.sent(key)
    todo = [i for i in range(len(recipients)) if i not in already]
    if already:
        logger.info(
            "batch %s resumed: %d already sent, %d to send",
            key,
            len(recipients) - len(todo),
            len(todo),
        )
    outcome: dict[int, Delivery] = {
        i: Delivery.sent(recipients[i], already[i]) for i in range(len(recipients)) if i in already
    }
    if todo:
        unrecorded = 0

        def record(position: int, message_id: str) -> None:
            # The message is out whatever the ledger says: a failed record must not fail the
            # batch (a retry would then re-send everything sent so far). It only widens the
            # duplicate window for this one recipient, which is logged.
            nonlocal unrecorded
            try:
                ledger.record(key, todo[position], message_id)
            except LedgerError:
                unrecorded += 1
                if unrecorded == 1:
                    logger.warning("batch %s: the send ledger is failing; sending goes on", key)

        deliveries = send([recipients[i] for i in todo], record)
        if len(deliveries) != len(todo):
            raise RuntimeError(f"sender returned {len(deliveries)} results for {len(todo)}")
        outcome.update(zip(todo, deliveries, strict=True))
        if unrecorded:
            logger.warning(
                "batch %s: %d sends could not be recorded in the ledger", key, unrecorded
            )
    result = BatchResult.from_deliveries([outcome[i] for i in range(len(recipients))])
    logger.info(
        "batch %s: %d sent, %d failed",
        key,
        len(recipients) - len(result.failures),
        len(result.failures),
    )
    return result
