"""A batch guarded by the send ledger: a retried activity never re-sends what was recorded,
every recipient's outcome (sent, failed for good) ends in the ledger, and a run returns counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

from sendmail.contract.vocabulary import FailureCode
from sendmail.sending import runner
from sendmail.sending.jobs import BatchStop, BatchTally
from sendmail.sending.ledger import LedgerError, MemorySendLedger, Recorded
from sendmail.sending.results import BatchReport, Delivery
from sendmail.sending.runner import fail_rest, run_batch, unwritten_records


class RecordingSender:
    """Sends to everyone except addresses in ``reject`` (failed) and ``later`` (pending, with
    the code ``later`` maps them to); can crash after ``crash_after`` sends."""

    def __init__(
        self,
        reject: set[str] | None = None,
        crash_after: int | None = None,
        later: Mapping[str, FailureCode] | set[str] | None = None,
    ) -> None:
        self.reject = reject or set()
        if isinstance(later, Mapping):
            self.later: dict[str, FailureCode] = dict(later)
        else:
            self.later = dict.fromkeys(later or set(), FailureCode.SES_THROTTLED)
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
                code = self.later[recipient]
                out.append(Delivery.postponed(recipient, code, f"later: {code.value}"))
                continue
            self.delivered.append(recipient)
            message_id = f"<{recipient}>"
            on_sent(position, message_id)
            out.append(Delivery.sent(recipient, message_id))
        return BatchReport(out, rate=12.5, stalled=bool(self.later))


RECIPIENTS = [f"r{i}@example.com" for i in range(6)]


def test_a_fresh_batch_sends_everyone_and_records_each_outcome() -> None:
    ledger = MemorySendLedger()
    sender = RecordingSender(reject={"r2@example.com"})

    tally = run_batch(ledger, "i:0", RECIPIENTS, sender)

    assert (tally.sent, tally.failed, tally.pending) == (5, 1, 0)
    assert (tally.pendingCode, tally.pendingMessage, tally.stopped) == (None, None, None)
    assert ledger.sent("i:0") == {i: f"<{r}>" for i, r in enumerate(RECIPIENTS) if i != 2}
    # the final failure is in the ledger too: code and message, no Message-ID
    assert ledger.outcomes("i:0")[2] == Recorded(
        code=FailureCode.SES_MESSAGE_REJECTED.value, message="no"
    )
    assert set(ledger.outcomes("i:0")) == set(range(6))


def test_the_tally_is_counts_only_and_crosses_as_json() -> None:
    tally = run_batch(MemorySendLedger(), "i:0", RECIPIENTS, RecordingSender())
    dumped = tally.model_dump(mode="json")
    assert set(dumped) == {
        "sent",
        "failed",
        "canceled",
        "pending",
        "pendingCode",
        "pendingMessage",
        "rate",
        "stalled",
        "stopped",
        "unrecorded",
        "held",
        "controlSeq",
    }
    assert dumped["unrecorded"] == {}  # per-recipient only while the ledger fails
    assert "r0@example.com" not in str(dumped)
    assert BatchTally.model_validate(dumped) == tally
    compact = tally.model_dump(mode="json", exclude_defaults=True)  # as activities return it
    assert BatchTally.model_validate(compact) == tally


class FailingThenWorkingLedger(MemorySendLedger):
    """A ledger whose writes fail while ``failing`` is set (reads work)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    def record(self, key: str, index: int, message_id: str) -> None:
        if self.failing:
            raise LedgerError("down")
        super().record(key, index, message_id)

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        if self.failing:
            raise LedgerError("down")
        super().record_many(key, records)


@pytest.mark.parametrize("group_ms", [0, 5])
def test_what_a_failing_ledger_could_not_record_is_never_sent_again(group_ms: float) -> None:
    """A run whose successes the ledger refused hands them on (``unrecorded``); the batch's
    next run counts them as sent, writes them once the ledger is back, and sends only to the
    others — never to them again."""
    ledger = FailingThenWorkingLedger()
    first = RecordingSender(later={RECIPIENTS[4], RECIPIENTS[5]})  # two left for the next run
    tally = run_batch(ledger, "i:0", RECIPIENTS, first, group_ms=group_ms)
    assert (tally.sent, tally.pending) == (4, 2)
    assert tally.unrecorded == {i: f"<{RECIPIENTS[i]}>" for i in range(4)}
    assert ledger.sent("i:0") == {}

    ledger.failing = False
    second = RecordingSender()
    again = run_batch(ledger, "i:0", RECIPIENTS, second, unrecorded=tally.unrecorded)
    assert second.asked == [RECIPIENTS[4], RECIPIENTS[5]]  # never 0..3 again
    assert (again.sent, again.failed, again.pending, again.unrecorded) == (6, 0, 0, {})
    assert ledger.sent("i:0") == {
        **tally.unrecorded,
        4: f"<{RECIPIENTS[4]}>",
        5: f"<{RECIPIENTS[5]}>",
    }


def test_failing_the_rest_keeps_what_was_sent_unrecorded_as_sent() -> None:
    ledger = MemorySendLedger()
    tally = fail_rest(
        ledger, "i:0", 6, FailureCode.SES_THROTTLED, "late", unrecorded={1: "<m1>", 2: "<m2>"}
    )
    assert (tally.sent, tally.failed, tally.unrecorded) == (2, 4, {})
    assert ledger.sent("i:0") == {1: "<m1>", 2: "<m2>"}
    assert sorted(i for i, r in ledger.outcomes("i:0").items() if not r.sent) == [0, 3, 4, 5]


def test_a_retried_batch_sends_only_to_those_not_recorded() -> None:
    ledger = MemorySendLedger()
    first = RecordingSender(crash_after=4)
    with pytest.raises(ConnectionError):
        run_batch(ledger, "i:0", RECIPIENTS, first)
    assert set(ledger.sent("i:0")) == {0, 1, 2, 3}  # recorded as they went

    second = RecordingSender()
    tally = run_batch(ledger, "i:0", RECIPIENTS, second)

    assert second.asked == ["r4@example.com", "r5@example.com"]
    assert first.delivered + second.delivered == RECIPIENTS  # each exactly once
    assert (tally.sent, tally.failed, tally.pending) == (6, 0, 0)  # the first run's included
    assert ledger.sent("i:0") == {i: f"<{r}>" for i, r in enumerate(RECIPIENTS)}


def test_a_batch_already_complete_sends_nothing_and_counts_every_earlier_outcome() -> None:
    ledger = MemorySendLedger()
    settled: list[int] = []
    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender(reject={"r5@example.com"}))
    again = RecordingSender()

    tally = run_batch(ledger, "i:0", RECIPIENTS, again, settled=settled.append)

    assert again.asked == []
    assert (tally.sent, tally.failed, tally.pending) == (5, 1, 0)
    assert settled == []  # nothing settled by this run (and no sender call at all)
    assert (tally.rate, tally.stalled) == (None, False)


def test_batches_do_not_share_records() -> None:
    ledger = MemorySendLedger()
    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender(reject={"r1@example.com"}))
    other = RecordingSender()
    tally = run_batch(ledger, "i:1", RECIPIENTS, other)
    assert other.delivered == RECIPIENTS
    assert (tally.sent, tally.failed) == (6, 0)
    assert ledger.outcomes("i:0")[1].code == FailureCode.SES_MESSAGE_REJECTED.value
    assert all(r.sent for r in ledger.outcomes("i:1").values())


def test_a_ledger_that_cannot_be_read_sends_nothing() -> None:
    """What the ledger could not confirm is not sent: the activity fails and Durable retries."""

    class Unreadable(MemorySendLedger):
        def outcomes(
            self, key: str, first: int = 0, stop: int | None = None
        ) -> dict[int, Recorded]:
            raise LedgerError("table storage unavailable")

    sender = RecordingSender()
    with pytest.raises(LedgerError):
        run_batch(Unreadable(), "i:0", RECIPIENTS, sender)
    assert sender.asked == []


class FailingLedger(MemorySendLedger):
    def record(self, key: str, index: int, message_id: str) -> None:
        raise LedgerError("table storage unavailable")

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        raise LedgerError("table storage unavailable")

    def record_failures(self, key: str, failures: Mapping[int, tuple[str, str]]) -> None:
        raise LedgerError("table storage unavailable")


@pytest.mark.parametrize("group_ms", [0, 50])
def test_a_failing_ledger_does_not_fail_the_batch_or_lose_sends(
    caplog: pytest.LogCaptureFixture, group_ms: float
) -> None:
    sender = RecordingSender(reject={"r0@example.com"})

    tally = run_batch(FailingLedger(), "i:0", RECIPIENTS, sender, group_ms=group_ms)

    assert sender.delivered == RECIPIENTS[1:]
    assert (tally.sent, tally.failed, tally.pending) == (5, 1, 0)  # the mail is out: sent
    assert "5 sends could not be recorded" in caplog.text
    assert "1 failures could not be recorded" in caplog.text


def test_pending_recipients_are_counted_apart_from_failures_with_the_pace() -> None:
    ledger = MemorySendLedger()
    sender = RecordingSender(reject={"r1@example.com"}, later={"r3@example.com", "r4@example.com"})

    tally = run_batch(ledger, "i:0", RECIPIENTS, sender)

    assert (tally.sent, tally.failed, tally.pending) == (3, 1, 2)
    assert tally.pendingCode == FailureCode.SES_THROTTLED
    assert tally.pendingMessage == "later: SES_THROTTLED"
    assert (tally.rate, tally.stalled) == (12.5, True)
    outcomes = ledger.outcomes("i:0")
    assert set(outcomes) == {0, 1, 2, 5}  # the pending have no outcome: not decided yet
    assert not outcomes[1].sent


def test_the_pending_code_is_the_last_pending_recipients() -> None:
    later = {
        "r1@example.com": FailureCode.SES_THROTTLED,
        "r4@example.com": FailureCode.SES_ERROR,
    }
    tally = run_batch(MemorySendLedger(), "i:0", RECIPIENTS, RecordingSender(later=later))
    assert tally.pending == 2
    assert (tally.pendingCode, tally.pendingMessage) == (
        FailureCode.SES_ERROR,
        "later: SES_ERROR",
    )


def test_a_later_run_sends_only_the_undecided_and_counts_the_whole_batch() -> None:
    ledger = MemorySendLedger()
    first = RecordingSender(reject={"r1@example.com"}, later={"r3@example.com", "r4@example.com"})
    run_batch(ledger, "i:0", RECIPIENTS, first)

    second = RecordingSender()  # would send to r1 now: it must not be asked
    tally = run_batch(ledger, "i:0", RECIPIENTS, second)

    assert second.asked == ["r3@example.com", "r4@example.com"]  # r1 (failed) is not retried
    assert (tally.sent, tally.failed, tally.pending) == (5, 1, 0)  # earlier runs' included
    assert tally.pendingCode is None
    assert ledger.outcomes("i:0")[1].code == FailureCode.SES_MESSAGE_REJECTED.value
    assert ledger.sent("i:0")[3] == "<r3@example.com>"


def test_a_final_failure_is_never_retried_by_any_later_run() -> None:
    ledger = MemorySendLedger()
    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender(reject=set(RECIPIENTS)))
    for _ in range(3):
        again = RecordingSender()
        tally = run_batch(ledger, "i:0", RECIPIENTS, again)
        assert again.asked == []
        assert (tally.sent, tally.failed) == (0, 6)


def test_a_pending_recipient_that_was_sent_after_all_is_not_sent_again() -> None:
    """A crash after the send and its record, before the tally reached the orchestration."""
    ledger = MemorySendLedger()
    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender(later={"r3@example.com"}))
    ledger.record("i:0", 3, "<r3@example.com>")  # the lost run got through
    sender = RecordingSender()

    tally = run_batch(ledger, "i:0", RECIPIENTS, sender)

    assert sender.asked == []
    assert (tally.sent, tally.failed, tally.pending) == (6, 0, 0)


def test_settled_counts_only_what_this_run_decided() -> None:
    """The quota reservation's count: sent now or failed for good; not the pending, not what an
    earlier run settled."""
    ledger = MemorySendLedger()
    settled: list[int] = []
    first = RecordingSender(reject={"r1@example.com"}, later={"r3@example.com", "r4@example.com"})
    run_batch(ledger, "i:0", RECIPIENTS, first, settled=settled.append)
    assert settled == [4]  # 3 sent + 1 failed; the 2 pending are not settled

    run_batch(ledger, "i:0", RECIPIENTS, RecordingSender(), settled=settled.append)
    assert settled == [4, 2]


def test_a_sender_that_answers_for_the_wrong_number_of_recipients_fails_the_run() -> None:
    def short(recipients: Sequence[str], on_sent: Callable[[int, str], None]) -> BatchReport:
        return BatchReport([Delivery.sent(recipients[0], "<x>")])

    with pytest.raises(RuntimeError, match="1 results for 6"):
        run_batch(MemorySendLedger(), "i:0", RECIPIENTS, short)


def test_an_account_level_stop_is_reported_for_the_lane() -> None:
    class Stopping(RecordingSender):
        def __call__(
            self, recipients: Sequence[str], on_sent: Callable[[int, str], None]
        ) -> BatchReport:
            paused = [
                Delivery.postponed(r, FailureCode.SES_SENDING_PAUSED, "paused") for r in recipients
            ]
            return BatchReport(paused, stop=(FailureCode.SES_SENDING_PAUSED, "paused"))

    tally = run_batch(MemorySendLedger(), "i:0", RECIPIENTS, Stopping())
    assert tally.stopped == BatchStop(code=FailureCode.SES_SENDING_PAUSED, message="paused")
    assert (tally.pending, tally.pendingCode) == (6, FailureCode.SES_SENDING_PAUSED)


# --- fail_rest ------------------------------------------------------------------------------


def test_fail_rest_fails_every_undecided_recipient_and_keeps_what_was_decided() -> None:
    ledger = MemorySendLedger()
    first = RecordingSender(reject={"r1@example.com"}, later={"r3@example.com", "r4@example.com"})
    run_batch(ledger, "i:0", RECIPIENTS, first)

    tally = fail_rest(ledger, "i:0", 6, FailureCode.SES_THROTTLED, "deadline passed")

    assert tally == BatchTally(sent=3, failed=3)
    outcomes = ledger.outcomes("i:0")
    assert set(outcomes) == set(range(6))
    assert outcomes[1] == Recorded(code=FailureCode.SES_MESSAGE_REJECTED.value, message="no")
    assert outcomes[3] == outcomes[4] == Recorded(code="SES_THROTTLED", message="deadline passed")
    assert ledger.sent("i:0") == {i: f"<{RECIPIENTS[i]}>" for i in (0, 2, 5)}

    again = RecordingSender()  # the batch is decided: a later run sends nothing
    assert run_batch(ledger, "i:0", RECIPIENTS, again) == BatchTally(sent=3, failed=3)
    assert again.asked == []


def test_fail_rest_of_a_batch_never_run_fails_it_whole() -> None:
    ledger = MemorySendLedger()
    tally = fail_rest(ledger, "i:7", 4, FailureCode.SES_SENDING_PAUSED, "not attempted")
    assert tally == BatchTally(sent=0, failed=4)
    assert ledger.outcomes("i:7") == {
        i: Recorded(code="SES_SENDING_PAUSED", message="not attempted") for i in range(4)
    }
    assert fail_rest(ledger, "i:7", 4, FailureCode.BATCH_FAILED, "x") == tally  # idempotent
    assert ledger.outcomes("i:7")[0].code == "SES_SENDING_PAUSED"  # the first failure stays


def test_fail_rest_raises_when_the_ledger_cannot_record() -> None:
    """The orchestration counts such a batch as failed itself (orchestrators/lanes.py)."""
    with pytest.raises(LedgerError):
        fail_rest(FailingLedger(), "i:0", 3, FailureCode.BATCH_FAILED, "kept failing")


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

    tally = run_batch(ledger, "i:0", MANY, RecordingSender(), group_ms=50)

    assert (tally.sent, tally.failed, tally.pending) == (450, 0, 0)
    assert ledger.sent("i:0") == {i: f"<{r}>" for i, r in enumerate(MANY)}
    assert ledger.singles == 0
    assert unwritten_records() == 0  # the crash window's gauge is back to nothing
    assert sum(ledger.groups) == 450
    assert max(ledger.groups) <= 100
    assert len(ledger.groups) >= 5


def test_group_commit_writes_what_was_sent_before_a_crash_and_the_retry_skips_it() -> None:
    ledger = CountingLedger()
    first = RecordingSender(crash_after=130, reject={MANY[5]})
    with pytest.raises(ConnectionError):
        run_batch(ledger, "i:4", MANY, first, group_ms=50)
    assert len(ledger.sent("i:4")) == 130  # written on the way out, not lost with the run
    assert unwritten_records() == 0

    second = RecordingSender(reject={MANY[5]})
    tally = run_batch(ledger, "i:4", MANY, second, group_ms=50)

    assert MANY[5] in second.asked  # the crash came before its failure was recorded
    assert len(first.delivered) + len(second.delivered) == 449  # nobody mailed twice
    assert not set(first.delivered) & set(second.delivered)
    assert (tally.sent, tally.failed, tally.pending) == (449, 1, 0)
    assert ledger.outcomes("i:4")[5].code == FailureCode.SES_MESSAGE_REJECTED.value


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
