"""A batch guarded by the send ledger: a retried activity never re-sends what was recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

from sendmail.contract.vocabulary import FailureCode
from sendmail.sending import runner
from sendmail.sending.ledger import LedgerError, MemorySendLedger
from sendmail.sending.results import BatchReport, Delivery
from sendmail.sending.runner import run_batch, unwritten_records


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


# --- group commit ---------------------------------------------------------------------------


class CountingLedger(MemorySendLedger):
    """Counts the round trips a real table would make; can refuse groups."""

    def __init__(self, refuse_groups: bool = False) -> None:
        super().__init__()
        self.singles = 0
        self.groups: list[int] = []
        self.refuse_groups = refuse_groups

    def record(self, key: str, index: int, message_id: str) -> None:
        self.singles += 1
        super().record(key, index, message_id)

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        if self.refuse_groups:
            raise LedgerError("the transaction failed")
        self.groups.append(len(records))
        super().record_many(key, records)


MANY = [f"m{i:04d}@example.com" for i in range(450)]


def test_group_commit_writes_a_batch_in_groups_of_at_most_100() -> None:
    """One round trip per up to 100 recipients instead of one each (what a recipient cost most
    CPU on: the profile in docs/benchmarks.md), and every success is in the ledger before the
    result returns."""
    ledger = CountingLedger()

    result = run_batch(ledger, "i:0", MANY, RecordingSender(), group_ms=50)

    assert all(m is not None for m in result.messageIds)
    assert ledger.sent("i:0") == {i: f"<{r}>" for i, r in enumerate(MANY)}
    assert ledger.singles == 0
    assert unwritten_records() == 0  # the crash window's gauge is back to nothing
    assert sum(ledger.groups) == 450
    assert max(ledger.groups) <= 100
    assert len(ledger.groups) >= 5


def test_a_group_is_written_once_its_interval_passes_not_only_when_full() -> None:
    """A slow batch (a record every 20 ms) does not keep its records waiting for 100 of them:
    each is written within the interval (here 50 ms), so a crash re-sends at most that much."""
    ledger = CountingLedger()
    written_while_sending: list[int] = []

    def slow(recipients: Sequence[str], on_sent: Callable[[int, str], None]) -> BatchReport:
        out = []
        for position, recipient in enumerate(recipients):
            on_sent(position, f"<{recipient}>")
            out.append(Delivery.sent(recipient, f"<{recipient}>"))
            time.sleep(0.02)
        time.sleep(0.2)  # more than the interval: what was sent is written meanwhile
        written_while_sending.append(len(ledger.sent("i:1")))
        return BatchReport(out)

    run_batch(ledger, "i:1", MANY[:10], slow, group_ms=50)

    assert written_while_sending == [10]
    assert len(ledger.groups) >= 2  # written as they came, not in one group at the end


def test_a_refused_group_is_written_record_by_record() -> None:
    ledger = CountingLedger(refuse_groups=True)

    run_batch(ledger, "i:2", MANY[:150], RecordingSender(), group_ms=50)

    assert ledger.sent("i:2") == {i: f"<{r}>" for i, r in enumerate(MANY[:150])}
    assert ledger.singles == 150


def test_without_group_commit_each_record_is_written_by_the_sending_thread() -> None:
    ledger = CountingLedger()
    run_batch(ledger, "i:3", MANY[:20], RecordingSender(), group_ms=0)
    assert (ledger.singles, ledger.groups) == (20, [])


class HungLedger(MemorySendLedger):
    """A table that stopped answering: every write waits until released, then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writes = 0

    def record(self, key: str, index: int, message_id: str) -> None:
        self.writes += 1
        self.release.wait(5)
        raise LedgerError("timed out")

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        self.writes += 1
        self.release.wait(5)
        raise LedgerError("timed out")


def test_a_hung_ledger_slows_sending_down_and_never_holds_the_batch_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer is behind: add() waits once 200 records wait (the crash window stays
    bounded), a failing group is not retried record by record past the first failure, and
    close() gives up after its timeout, counting what was not written."""
    monkeypatch.setattr(runner, "CLOSE_TIMEOUT_SECONDS", 0.5)
    ledger = HungLedger()
    added: list[int] = []

    def send(recipients: Sequence[str], on_sent: Callable[[int, str], None]) -> BatchReport:
        out = []
        for position, recipient in enumerate(recipients):
            on_sent(position, f"<{recipient}>")
            added.append(position)
            out.append(Delivery.sent(recipient, f"<{recipient}>"))
        return BatchReport(out)

    worker = threading.Thread(
        target=lambda: run_batch(ledger, "i:9", MANY, send, group_ms=50), daemon=True
    )
    worker.start()
    time.sleep(0.5)
    assert len(added) <= runner.MAX_WAITING + runner.GROUP_SIZE  # held back, not all 450
    ledger.release.set()  # the store answers again (with errors)
    worker.join(20)
    assert not worker.is_alive()
    assert len(added) == 450  # everyone reported sent: the mail is out
    assert ledger.writes <= 2 * (450 // runner.GROUP_SIZE + 1)  # no record-by-record storm
