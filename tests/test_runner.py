"""A batch guarded by the send ledger: a retried activity never re-sends what was recorded."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from sendmail.ledger import MemorySendLedger
from sendmail.results import Delivery, FailureCode
from sendmail.runner import run_batch


class RecordingSender:
    """Sends to everyone except addresses in ``reject``; can crash after ``crash_after`` sends."""

    def __init__(self, reject: set[str] | None = None, crash_after: int | None = None) -> None:
        self.reject = reject or set()
        self.crash_after = crash_after
        self.delivered: list[str] = []

    def __call__(
        self, recipients: Sequence[str], on_sent: Callable[[int, str], None]
    ) -> list[Delivery]:
        out: list[Delivery] = []
        for position, recipient in enumerate(recipients):
            if self.crash_after is not None and len(self.delivered) == self.crash_after:
                raise ConnectionError("worker lost")
            if recipient in self.reject:
                out.append(Delivery.failed(recipient, FailureCode.SES_MESSAGE_REJECTED, "no"))
                continue
            self.delivered.append(recipient)
            message_id = f"<{recipient}>"
            on_sent(position, message_id)
            out.append(Delivery.sent(recipient, message_id))
        return out


RECIPIENTS = [f"r{i}@example.com" for i in range(6)]


def test_a_fresh_batch_sends_everyone_and_records_each_success() -> None:
    ledger = MemorySendLedger()
    sender = RecordingSender(reject={"r2@example.com"})

    result = run_batch(ledger, "i:0", RECIPIENTS, sender)

    assert result.messageIds == [f"<{r}>" if r != "r2@example.com" else None for r in RECIPIENTS]
    assert [(f.index, f.code) for f in result.failures] == [(2, FailureCode.SES_MESSAGE_REJECTED)]
    assert ledger.sent("i:0") == {i: f"<{r}>" for i, r in enumerate(RECIPIENTS) if i != 2}


def test_a_retried_batch_sends_only_to_those_not_recorded() -> None:
    ledger = MemorySendLedger()
    first = RecordingSender(crash_after=4)
    with pytest.raises(ConnectionError):
        run_batch(ledger, "i:0", RECIPIENTS, first)

    second = RecordingSender()
    result = run_batch(ledger, "i:0", RECIPIENTS, second)

    assert second.delivered == ["r4@example.com", "r5@example.com"]
    assert first.delivered + second.delivered == RECIPIENTS  # each exactly once
    assert result.messageIds == [f"<{r}>" for r in RECIPIENTS]
    assert result.failures == []


def test_a_batch_already_complete_sends_nothing() -> None:
    ledger = MemorySendLedger()
    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender())
    again = RecordingSender()
    result = run_batch(ledger, "i:0", RECIPIENTS, again)
    assert again.delivered == []
    assert len([m for m in result.messageIds if m]) == len(RECIPIENTS)


def test_batches_do_not_share_records() -> None:
    ledger = MemorySendLedger()
    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender())
    other = RecordingSender()
    run_batch(ledger, "i:1", RECIPIENTS, other)
    assert other.delivered == RECIPIENTS


class FailingLedger(MemorySendLedger):
    def record(self, key: str, index: int, message_id: str) -> None:
        from sendmail.ledger import LedgerError

        raise LedgerError("table storage unavailable")


def test_a_failing_ledger_does_not_fail_the_batch_or_lose_message_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = RecordingSender()
    result = run_batch(FailingLedger(), "i:0", RECIPIENTS, sender)
    assert sender.delivered == RECIPIENTS
    assert result.messageIds == [f"<{r}>" for r in RECIPIENTS]
    assert "6 sends could not be recorded" in caplog.text
