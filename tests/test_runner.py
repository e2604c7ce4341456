"""A batch guarded by the send ledger: a retried activity never re-sends what was recorded."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from sendmail.contract.vocabulary import FailureCode
from sendmail.sending.ledger import MemorySendLedger
from sendmail.sending.results import BatchReport, Delivery
from sendmail.sending.runner import run_batch


class RecordingSender:
    """Sends to everyone except addresses in ``reject`` (failed) and ``later`` (pending); can
    crash after ``crash_after`` sends."""

    def __init__(
        self,
        reject: set[str] | None = None,
        crash_after: int | None = None,
        later: set[str] | None = None,
    ) -> None:
        self.reject = reject or set()
        self.later = later or set()
        self.crash_after = crash_after
        self.delivered: list[str] = []
        self.asked: list[str] = []

    def __call__(
        self, recipients: Sequence[str], on_sent: Callable[[int, str], None]
    ) -> BatchReport:
        out: list[Delivery] = []
        self.asked.extend(recipients)
        for position, recipient in enumerate(recipients):
            if self.crash_after is not None and len(self.delivered) == self.crash_after:
                raise ConnectionError("worker lost")
            if recipient in self.reject:
                out.append(Delivery.failed(recipient, FailureCode.SES_MESSAGE_REJECTED, "no"))
                continue
            if recipient in self.later:
                out.append(Delivery.postponed(recipient, FailureCode.SES_THROTTLED, "later"))
                continue
            self.delivered.append(recipient)
            message_id = f"<{recipient}>"
            on_sent(position, message_id)
            out.append(Delivery.sent(recipient, message_id))
        return BatchReport(out, rate=12.5, stalled=bool(self.later))


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
        from sendmail.sending.ledger import LedgerError

        raise LedgerError("table storage unavailable")


def test_a_failing_ledger_does_not_fail_the_batch_or_lose_message_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = RecordingSender()
    result = run_batch(FailingLedger(), "i:0", RECIPIENTS, sender)
    assert sender.delivered == RECIPIENTS
    assert result.messageIds == [f"<{r}>" for r in RECIPIENTS]
    assert "6 sends could not be recorded" in caplog.text


def test_pending_recipients_are_reported_apart_from_failures_with_the_pace() -> None:
    ledger = MemorySendLedger()
    sender = RecordingSender(reject={"r1@example.com"}, later={"r3@example.com", "r4@example.com"})

    result = run_batch(ledger, "i:0", RECIPIENTS, sender)

    assert [(f.index, f.code) for f in result.failures] == [(1, FailureCode.SES_MESSAGE_REJECTED)]
    assert [(p.index, p.code) for p in result.pending] == [
        (3, FailureCode.SES_THROTTLED),
        (4, FailureCode.SES_THROTTLED),
    ]
    assert result.messageIds[3] is None
    assert (result.rate, result.stalled) == (12.5, True)


def test_a_later_run_sends_only_the_pending_and_reports_nothing_about_the_others() -> None:
    ledger = MemorySendLedger()
    first = RecordingSender(reject={"r1@example.com"}, later={"r3@example.com", "r4@example.com"})
    run_batch(ledger, "i:0", RECIPIENTS, first)

    second = RecordingSender()
    pending = [RECIPIENTS[3], RECIPIENTS[4]]
    result = run_batch(ledger, "i:0", pending, second, indices=[3, 4], size=len(RECIPIENTS))

    assert second.asked == ["r3@example.com", "r4@example.com"]  # r1 (failed) is not retried
    # the result is aligned with the whole batch and covers this run's indices only
    assert result.messageIds == [None, None, None, "<r3@example.com>", "<r4@example.com>", None]
    assert result.failures == []  # r1's failure belongs to the first run's result
    assert result.pending == []


def test_a_pending_recipient_that_was_sent_after_all_is_not_sent_again() -> None:
    """A crash after the send and its record, before the result reached the orchestration."""
    ledger = MemorySendLedger()
    ledger.record("i:0", 3, "<r3@example.com>")
    sender = RecordingSender()

    result = run_batch(ledger, "i:0", RECIPIENTS[3:5], sender, indices=[3, 4], size=len(RECIPIENTS))

    assert sender.asked == ["r4@example.com"]
    assert result.messageIds[3] == "<r3@example.com>"


def test_indices_must_match_the_recipients() -> None:
    with pytest.raises(ValueError, match="2 recipients for 1 indices"):
        run_batch(MemorySendLedger(), "i:0", RECIPIENTS[:2], RecordingSender(), indices=[0])


def test_an_account_level_stop_is_reported_for_the_lane() -> None:
    class Stopping(RecordingSender):
        def __call__(
            self, recipients: Sequence[str], on_sent: Callable[[int, str], None]
        ) -> BatchReport:
            paused = Delivery.failed(recipients[0], FailureCode.SES_SENDING_PAUSED, "paused")
            return BatchReport(
                [paused] * len(recipients), stop=(FailureCode.SES_SENDING_PAUSED, "paused")
            )

    result = run_batch(MemorySendLedger(), "i:0", RECIPIENTS, Stopping())
    assert result.stopped is not None
    assert (result.stopped.code, result.stopped.message) == (
        FailureCode.SES_SENDING_PAUSED,
        "paused",
    )
