"""The orchestrations, run by the real SDK under devhost's engine with scripted activities.

Splitting into lanes and batches, progress, explicit retries, settling a batch with FAIL_BATCH,
pending recipients carried from run to run until the send's deadline, lanes that continue as
new every few batches, and histories that hold references and counts only — each replayed from
real histories, with the host applying actions as Azure's shim does (see tests/devhost/
test_shim.py for that part on its own). The scripted activities keep a small ledger of their own
(what each batch decided), so their counts add up the way the real ones' do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from activities.names import (
    FAIL_BATCH,
    FINISH_SEND,
    FORGET_SECRET,
    READ_CONTROL,
    RELEASE_QUOTA,
    SEND_FAILED,
    SEND_SES_BATCH,
    SEND_SMTP_BATCH,
)
from devhost.durable.engine import Engine
from devhost.durable.history import EventType, parse_timestamp
from orchestrators import lanes
from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from orchestrators.send import bp as send_orchestrators
from sendmail import services
from sendmail.contract.vocabulary import FailureCode
from sendmail.sending.control import CANCELED_MESSAGE
from sendmail.sending.jobs import (
    BatchStop,
    BatchTally,
    FailBatch,
    LaneJob,
    Mail,
    SendOutcome,
    SesBatch,
    SesJob,
    SmtpBatch,
    SmtpJob,
    ledger_key,
)
from sendmail.sending.lists import StoredSend, store_send
from sendmail.sending.ses_errors import NOT_REACHED
from tests.support.engine import RecordingStore, output, run, running_engine, wait_finished

app = df.DFApp()
app.register_functions(send_orchestrators)

Behaviour = Callable[[str, Any], Any]
CALLS: list[tuple[str, Any]] = []
_LOCK = threading.Lock()

SENT = "sent"
BATCH_FAILED_MESSAGE = "the batch failed unexpectedly after retries"


class Ledger:
    """What the scripted activities decided, per ledger key: offset in the batch -> ``"sent"``
    or a failure code. As in the send ledger, a recipient once decided stays decided."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decided: dict[str, dict[int, str]] = {}

    def clear(self) -> None:
        with self._lock:
            self.decided.clear()

    def undecided(self, key: str, count: int) -> list[int]:
        with self._lock:
            done = self.decided.get(key, {})
            return [offset for offset in range(count) if offset not in done]

    def decide(self, key: str, offsets: Iterable[int], outcome: str) -> None:
        with self._lock:
            batch = self.decided.setdefault(key, {})
            for offset in offsets:
                batch.setdefault(offset, outcome)

    def tally(
        self,
        key: str,
        count: int,
        *,
        code: str | None = None,
        message: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The batch's :class:`BatchTally` (the undecided are pending, with ``code``)."""
        with self._lock:
            outcomes = list(self.decided.get(key, {}).values())
        sent = outcomes.count(SENT)
        canceled = outcomes.count(FailureCode.CANCELED.value)
        pending = count - len(outcomes)
        return BatchTally(
            sent=sent,
            failed=len(outcomes) - sent - canceled,
            canceled=canceled,
            pending=pending,
            pendingCode=code if pending else None,
            pendingMessage=message if pending else None,
            **extra,
        ).model_dump(mode="json", exclude_none=True)


LEDGER = Ledger()


def ordinary(name: str, payload: Any) -> Any:
    """What the real activities do when all goes well: every batch is sent, FAIL_BATCH fails
    what has no outcome yet, the rest answer nothing."""
    if name == FAIL_BATCH:
        job = FailBatch.model_validate(payload)
        LEDGER.decide(job.ledgerKey, range(job.count), job.code)
        return LEDGER.tally(job.ledgerKey, job.count)
    if name == SEND_SES_BATCH:
        ses = SesBatch.model_validate(payload)
        LEDGER.decide(ses.ledgerKey, range(ses.count), SENT)
        return LEDGER.tally(ses.ledgerKey, ses.count, rate=ses.maxRate)
    if name == SEND_SMTP_BATCH:
        smtp = SmtpBatch.model_validate(payload)
        LEDGER.decide(smtp.ledgerKey, range(smtp.count), SENT)
        return LEDGER.tally(smtp.ledgerKey, smtp.count)
    return None


BEHAVIOUR: list[Behaviour] = [ordinary]


def _answer(name: str, payload: Any) -> Any:
    with _LOCK:
        CALLS.append((name, payload))
    outcome = BEHAVIOUR[0](name, payload)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@app.function_name(SEND_SES_BATCH)
@app.activity_trigger(input_name="batch")
def ses_batch(batch: dict[str, Any]) -> Any:
    return _answer(SEND_SES_BATCH, batch)


@app.function_name(SEND_SMTP_BATCH)
@app.activity_trigger(input_name="batch")
def smtp_batch(batch: dict[str, Any]) -> Any:
    return _answer(SEND_SMTP_BATCH, batch)


@app.function_name(FAIL_BATCH)
@app.activity_trigger(input_name="batch")
def fail_batch(batch: dict[str, Any]) -> Any:
    return _answer(FAIL_BATCH, batch)


@app.function_name(FINISH_SEND)
@app.activity_trigger(input_name="send")
def finish_send(send: dict[str, Any]) -> Any:
    return _answer(FINISH_SEND, send)


# The app's functions must all exist: a call to a missing one is never answered on Azure
# (devhost.durable.shim.call_refusal).
@app.function_name(RELEASE_QUOTA)
@app.activity_trigger(input_name="send")
def release(send: str) -> Any:
    return _answer(RELEASE_QUOTA, send)


@app.function_name(FORGET_SECRET)
@app.activity_trigger(input_name="ref")
def forget(ref: str) -> Any:
    return _answer(FORGET_SECRET, ref)


@app.function_name(READ_CONTROL)
@app.activity_trigger(input_name="send")
def read_control(send: str) -> Any:
    return _answer(READ_CONTROL, send)


@app.function_name(SEND_FAILED)
@app.activity_trigger(input_name="send")
def send_failed(send: str) -> Any:
    return _answer(SEND_FAILED, send)


@pytest.fixture
def store(tmp_path: Any) -> RecordingStore:
    return RecordingStore(tmp_path / "durable.sqlite3")


@pytest.fixture
def engine(
    tmp_path: Any, store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    monkeypatch.setattr(lanes, "ACTIVITY_RETRY_DELAY", timedelta(milliseconds=30))
    monkeypatch.setattr(lanes, "FIRST_STALL_WAIT", timedelta(milliseconds=100))
    monkeypatch.setattr(lanes, "MAX_STALL_WAIT", timedelta(milliseconds=250))
    monkeypatch.setattr(lanes, "LAST_RUN", timedelta(milliseconds=100))
    CALLS.clear()
    LEDGER.clear()
    BEHAVIOUR[0] = ordinary
    with running_engine(app, tmp_path, store=store) as running:
        yield running


def ses_job(total: int, batch_size: int = 500, lanes_: int = 2, **kw: Any) -> dict[str, Any]:
    job = {
        "kind": "ses",
        "listRef": "list-1",
        "total": total,
        "batchSize": batch_size,
        "lanes": lanes_,
        "maxRate": 14.0,
        "deadlineSeconds": 3600,
        **kw,
    }
    return SesJob.model_validate(job).model_dump(mode="json", exclude_none=True)


def smtp_job(total: int, connections: int, **kw: Any) -> dict[str, Any]:
    job = {
        "kind": "smtp",
        "listRef": "list-1",
        "total": total,
        "provider": "GMAIL",
        "secretRef": "send-1",
        "connections": connections,
        **kw,
    }
    return SmtpJob.model_validate(job).model_dump(mode="json")


def calls(name: str) -> list[Any]:
    with _LOCK:
        return [payload for called, payload in CALLS if called == name]


def ses_runs() -> list[SesBatch]:
    return [SesBatch.model_validate(p) for p in calls(SEND_SES_BATCH)]


def smtp_runs() -> list[SmtpBatch]:
    return [SmtpBatch.model_validate(p) for p in calls(SEND_SMTP_BATCH)]


def settled() -> list[FailBatch]:
    return [FailBatch.model_validate(p) for p in calls(FAIL_BATCH)]


def outcome_of(row: Any) -> SendOutcome:
    """The orchestration's output: counts, nothing else."""
    value = output(row)
    assert set(value) - {"canceled"} == {"kind", "total", "sent", "failed"}
    return SendOutcome.model_validate(value)


def history_of(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    return engine.store.get_history(instance_id)


def lane_inputs(store: RecordingStore, lane_id: str) -> list[LaneJob]:
    """The input of each of the lane's generations."""
    return [
        LaneJob.model_validate_json(e["Input"])
        for generation in store.generations(lane_id)
        for e in generation
        if e["EventType"] == EventType.EXECUTION_STARTED
    ]


def covered(batches: Iterable[tuple[int, int]]) -> list[int]:
    """Every recipient index the batches cover, in the batches' order."""
    return [index for start, count in batches for index in range(start, start + count)]


# --- splitting ---------------------------------------------------------------------------------


def test_lanes_split_the_send_evenly_and_run_their_batches_in_request_order(
    engine: Engine,
) -> None:
    row = run(engine, SES_ORCHESTRATOR, ses_job(1234, 500, 2))

    runs = ses_runs()
    # two lanes of 617, each a batch of 500 then one of 117 (even shares finish together); each
    # lane's batches in request order, and together every recipient exactly once
    lane0 = [(b.start, b.count) for b in runs if b.start < 617]
    lane1 = [(b.start, b.count) for b in runs if b.start >= 617]
    assert lane0 == [(0, 500), (500, 117)]
    assert lane1 == [(617, 500), (1117, 117)]
    assert sorted(covered(lane0 + lane1)) == list(range(1234))
    assert len(covered(lane0 + lane1)) == 1234
    assert [b.ledgerKey for b in runs] == [ledger_key(row.instance_id, b.start) for b in runs]
    assert {b.listRef for b in runs} == {"list-1"}
    assert {b.maxRate for b in runs} == {7.0}  # the account's 14/s shared by two lanes
    started = parse_timestamp(history_of(engine, row.instance_id)[0]["Timestamp"])
    assert {b.deadline for b in runs} == {started + timedelta(seconds=3600)}
    assert outcome_of(row) == SendOutcome(kind="ses", total=1234, sent=1234, failed=0)
    # the sends table gets the sums, then the quota reservation is released
    assert calls(FINISH_SEND) == [{"id": row.instance_id, "sent": 1234, "failed": 0, "canceled": 0}]
    assert [name for name, _ in CALLS][-2:] == [FINISH_SEND, RELEASE_QUOTA]
    assert calls(RELEASE_QUOTA) == [row.instance_id]
    assert calls(FORGET_SECRET) == []
    assert settled() == []


def test_lanes_are_sub_orchestrations_with_ids_derived_from_the_send(engine: Engine) -> None:
    row = run(engine, SES_ORCHESTRATOR, ses_job(30, 10, 3))

    created = [
        e
        for e in history_of(engine, row.instance_id)
        if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
    ]
    assert [e["InstanceId"] for e in created] == [f"{row.instance_id}:lane{n}" for n in range(3)]
    jobs = [LaneJob.model_validate_json(e["Input"]) for e in created]
    assert [(j.start, j.end) for j in jobs] == [(0, 10), (10, 20), (20, 30)]
    assert {(j.sendId, j.listRef, j.kind) for j in jobs} == {(row.instance_id, "list-1", "ses")}


def test_progress_is_published_by_the_parent_and_by_each_lane(engine: Engine) -> None:
    row = run(engine, SES_ORCHESTRATOR, ses_job(25, 10, 2))

    assert json.loads(row.custom_status or "") == {
        "total": 25,
        "sent": 25,
        "failed": 0,
        "pending": 0,
        "canceled": 0,
        "batches": 4,
        "batchesDone": 4,
        "lanes": 2,
    }
    statuses = []
    for n in range(2):
        lane = engine.store.get_instance(f"{row.instance_id}:lane{n}")
        assert lane is not None
        statuses.append(json.loads(lane.custom_status or ""))
    assert statuses == [
        {
            "total": total,
            "sent": total,
            "failed": 0,
            "pending": 0,
            "canceled": 0,
            "batches": 2,
            "batchesDone": 2,
            "lanes": 0,
        }
        for total in (13, 12)
    ]


# --- unexpected failures: explicit retries, then FAIL_BATCH -------------------------------------


def test_an_activity_that_fails_once_is_run_again_after_a_timer(engine: Engine) -> None:
    failures = {"left": 1}

    def flaky(name: str, payload: Any) -> Any:
        if name == SEND_SES_BATCH and failures["left"]:
            failures["left"] -= 1
            return RuntimeError("worker lost")
        return ordinary(name, payload)

    BEHAVIOUR[0] = flaky
    row = run(engine, SES_ORCHESTRATOR, ses_job(1, 10, 1))

    assert outcome_of(row) == SendOutcome(kind="ses", total=1, sent=1, failed=0)
    lane = history_of(engine, f"{row.instance_id}:lane0")
    kinds = [
        e["EventType"]
        for e in lane
        if e["EventType"] in (EventType.TASK_SCHEDULED, EventType.TIMER_CREATED)
    ]
    assert kinds == [EventType.TASK_SCHEDULED, EventType.TIMER_CREATED, EventType.TASK_SCHEDULED]
    first, second = ses_runs()
    assert first == second  # the same batch, run again
    assert not any("Retry" in json.dumps(e) for e in lane)  # no *_with_retry anywhere
    assert settled() == []


def test_a_batch_that_keeps_failing_is_settled_by_fail_batch(engine: Engine) -> None:
    def second_batch_crashes(name: str, payload: Any) -> Any:
        if name == SEND_SES_BATCH and payload["start"] == 2:
            # it sent its first recipient (the ledger has it), then the worker was lost
            LEDGER.decide(payload["ledgerKey"], [0], SENT)
            return RuntimeError("storage unavailable")
        return ordinary(name, payload)

    BEHAVIOUR[0] = second_batch_crashes

    row = run(engine, SES_ORCHESTRATOR, ses_job(4, 2, 1, deadlineSeconds=0.8))

    # run again and again (30, 60, 120 ms ...) until the deadline, then FAIL_BATCH settles it
    assert len([b for b in ses_runs() if b.start == 2]) >= 3
    (settle,) = settled()
    assert (settle.ledgerKey, settle.count, settle.code) == (
        ledger_key(row.instance_id, 2),
        2,
        FailureCode.BATCH_FAILED,
    )
    assert settle.message.startswith(BATCH_FAILED_MESSAGE)
    # what the ledger holds as sent stays sent
    assert outcome_of(row) == SendOutcome(kind="ses", total=4, sent=3, failed=1)
    assert calls(FINISH_SEND) == [{"id": row.instance_id, "sent": 3, "failed": 1, "canceled": 0}]


def test_a_batch_that_cannot_even_be_settled_counts_as_failed_and_the_send_goes_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def storage_down_for_batch_zero(name: str, payload: Any) -> Any:
        if name == FAIL_BATCH or (name == SEND_SES_BATCH and payload["start"] == 0):
            return RuntimeError("table storage unavailable")
        return ordinary(name, payload)

    BEHAVIOUR[0] = storage_down_for_batch_zero
    # batch 0 runs at 0, 30, 90, 210, 450 ms and gives up (the next run, 480 ms later, would
    # be past the last chance at 900 ms); FAIL_BATCH's three runs take 90 ms: batch 2 has
    # hundreds of milliseconds left for its turn before the last chance
    monkeypatch.setattr(lanes, "MAX_STALL_WAIT", timedelta(seconds=1))

    row = run(engine, SES_ORCHESTRATOR, ses_job(3, 2, 1, deadlineSeconds=1.0))

    assert len(calls(FAIL_BATCH)) == lanes.ACTIVITY_ATTEMPTS  # tried, then given up
    assert [(b.start, b.count) for b in ses_runs() if b.start != 0] == [(2, 1)]  # went on
    assert outcome_of(row) == SendOutcome(kind="ses", total=3, sent=1, failed=2)
    assert calls(FINISH_SEND) == [{"id": row.instance_id, "sent": 1, "failed": 2, "canceled": 0}]


def test_what_a_batch_sent_stays_sent_when_fail_batch_fails_at_the_deadline(
    engine: Engine,
) -> None:
    behaviour = pending_first(1000, stalled=True)

    def settling_fails(name: str, payload: Any) -> Any:
        if name == FAIL_BATCH:
            return RuntimeError("table storage unavailable")
        return behaviour(name, payload)

    BEHAVIOUR[0] = settling_fails

    row = run(engine, SES_ORCHESTRATOR, ses_job(4, 4, 1, deadlineSeconds=0.6))

    assert len(calls(FAIL_BATCH)) == lanes.ACTIVITY_ATTEMPTS
    # the last run's count of sent recipients holds; the rest count as failed
    assert outcome_of(row) == SendOutcome(kind="ses", total=4, sent=2, failed=2)


def test_a_failing_finish_send_does_not_fail_the_send(engine: Engine) -> None:
    def finish_fails(name: str, payload: Any) -> Any:
        if name == FINISH_SEND:
            return RuntimeError("table storage unavailable")
        return ordinary(name, payload)

    BEHAVIOUR[0] = finish_fails

    row = run(engine, SES_ORCHESTRATOR, ses_job(3, 2, 1))

    assert outcome_of(row) == SendOutcome(kind="ses", total=3, sent=3, failed=0)
    assert calls(FINISH_SEND) != []
    assert calls(RELEASE_QUOTA) == [row.instance_id]


# --- pending recipients: time, never recipients --------------------------------------------------


def pending_first(
    rounds: int,
    *,
    stalled: bool,
    code: str = "SES_THROTTLED",
    hold: Callable[[int], None] = lambda run_no: None,
) -> Behaviour:
    """Each batch leaves its odd recipients pending for ``rounds`` runs, then sends them; a run
    ends at rate 3 + its number. ``hold(run_no)`` is called before a run does anything."""
    seen: dict[str, int] = {}

    def behaviour(name: str, payload: Any) -> Any:
        if name != SEND_SES_BATCH:
            return ordinary(name, payload)
        batch = SesBatch.model_validate(payload)
        with _LOCK:
            run_no = seen[batch.ledgerKey] = seen.get(batch.ledgerKey, 0) + 1
        hold(run_no)
        ready = [
            offset
            for offset in LEDGER.undecided(batch.ledgerKey, batch.count)
            if not (offset % 2 and run_no <= rounds)
        ]
        LEDGER.decide(batch.ledgerKey, ready, SENT)
        return LEDGER.tally(
            batch.ledgerKey,
            batch.count,
            code=code,
            message="kept throttling",
            rate=3.0 + run_no,
            stalled=stalled,
        )

    return behaviour


def test_a_pending_batch_is_run_again_with_the_same_input(engine: Engine) -> None:
    BEHAVIOUR[0] = pending_first(2, stalled=False)

    row = run(engine, SES_ORCHESTRATOR, ses_job(6, 6, 1))

    assert outcome_of(row) == SendOutcome(kind="ses", total=6, sent=6, failed=0)
    runs = calls(SEND_SES_BATCH)
    assert len(runs) == 3
    # the same batch every time, never the recipients still pending: the activity sends only
    # what the ledger holds no outcome for; only the pace moves on
    assert set(runs[0]) == {
        "ledgerKey",
        "listRef",
        "start",
        "count",
        "maxRate",
        "startRate",
        "deadline",
    }
    assert all({**r, "startRate": None} == {**runs[0], "startRate": None} for r in runs)
    assert [r["startRate"] for r in runs] == [14.0, 4.0, 5.0]  # where the last run ended
    lane = history_of(engine, f"{row.instance_id}:lane0")
    assert not any(e["EventType"] == EventType.TIMER_CREATED for e in lane)  # progress: no wait
    assert settled() == []


def test_what_the_ledger_could_not_record_is_handed_to_the_batchs_next_run(
    engine: Engine,
) -> None:
    """While the ledger fails, a run returns what it sent without recording it; the lane gives
    exactly that to the batch's next run (which never sends them again: test_runner.py) and to
    the batch's settling at the deadline — and drops it once a run could write it."""
    runs_seen: list[dict[str, Any]] = []

    def behaviour(name: str, payload: Any) -> Any:
        if name != SEND_SES_BATCH:
            return ordinary(name, payload)
        runs_seen.append(payload)
        if len(runs_seen) == 1:  # sent 0 and 1, could not record them; 2 and 3 pending
            return {"sent": 2, "failed": 0, "pending": 2, "unrecorded": {"0": "m0", "1": "m1"}}
        return {"sent": 4, "failed": 0}

    BEHAVIOUR[0] = behaviour

    row = run(engine, SES_ORCHESTRATOR, ses_job(4, 4, 1))

    assert outcome_of(row) == SendOutcome(kind="ses", total=4, sent=4, failed=0)
    assert "unrecorded" not in runs_seen[0]  # nothing to hand on: left out of the history
    assert runs_seen[1]["unrecorded"] == {"0": "m0", "1": "m1"}
    assert len(runs_seen) == 2


def test_a_stalled_batch_waits_on_a_durable_timer_that_grows(engine: Engine) -> None:
    BEHAVIOUR[0] = pending_first(3, stalled=True)

    row = run(engine, SES_ORCHESTRATOR, ses_job(2, 2, 1))

    assert outcome_of(row) == SendOutcome(kind="ses", total=2, sent=2, failed=0)
    lane = history_of(engine, f"{row.instance_id}:lane0")
    waits = [
        parse_timestamp(e["FireAt"]) - parse_timestamp(e["Timestamp"])
        for e in lane
        if e["EventType"] == EventType.TIMER_CREATED
    ]
    assert waits == [
        timedelta(milliseconds=100),
        timedelta(milliseconds=200),
        timedelta(milliseconds=250),
    ]


def test_the_status_shows_pending_recipients_while_they_wait(engine: Engine) -> None:
    gate = threading.Event()

    def hold_second_run(run_no: int) -> None:
        if run_no == 2:
            gate.wait(10)

    BEHAVIOUR[0] = pending_first(1, stalled=True, hold=hold_second_run)
    instance_id = engine.start_orchestration(SES_ORCHESTRATOR, None, json.dumps(ses_job(4, 4, 1)))
    status: dict[str, Any] = {}
    try:
        for _ in range(500):
            lane = engine.store.get_instance(f"{instance_id}:lane0")
            status = json.loads(lane.custom_status or "{}") if lane else {}
            if status.get("pending"):
                break
            threading.Event().wait(0.02)
        # (the batch's recipients sent so far count once the batch is done)
        assert (status["total"], status["pending"], status["batchesDone"]) == (4, 2, 0)
    finally:
        gate.set()


def test_at_the_deadline_fail_batch_settles_the_pending_with_their_last_code(
    engine: Engine,
) -> None:
    BEHAVIOUR[0] = pending_first(1000, stalled=True, code="SES_ERROR")

    row = run(engine, SES_ORCHESTRATOR, ses_job(4, 4, 1, deadlineSeconds=1.0))

    assert settled() == [
        FailBatch(
            ledgerKey=ledger_key(row.instance_id, 0),
            count=4,
            code=FailureCode.SES_ERROR,
            message="kept throttling",
        )
    ]
    assert outcome_of(row) == SendOutcome(kind="ses", total=4, sent=2, failed=2)
    # it kept trying (timers of 100, 200, 250 ms ...) and made a last run shortly before the
    # deadline instead of giving up when the next wait would have crossed it
    assert len(ses_runs()) >= 2
    lane = history_of(engine, f"{row.instance_id}:lane0")
    started = parse_timestamp(history_of(engine, row.instance_id)[0]["Timestamp"])
    last_timer = max(
        parse_timestamp(e["FireAt"]) for e in lane if e["EventType"] == EventType.TIMER_CREATED
    )
    assert last_timer <= started + timedelta(seconds=1.0) - timedelta(milliseconds=100)


def test_a_batch_whose_turn_comes_after_the_last_chance_is_settled_without_a_run(
    engine: Engine,
) -> None:
    BEHAVIOUR[0] = pending_first(1000, stalled=True)

    row = run(engine, SES_ORCHESTRATOR, ses_job(4, 2, 1, deadlineSeconds=1.0))

    # batch 0 used the time up; batch 1 never reached SES, and says why
    assert {b.start for b in ses_runs()} == {0}
    assert settled() == [
        FailBatch(
            ledgerKey=ledger_key(row.instance_id, 0),
            count=2,
            code=FailureCode.SES_THROTTLED,
            message="kept throttling",
        ),
        FailBatch(
            ledgerKey=ledger_key(row.instance_id, 2),
            count=2,
            code=NOT_REACHED.code,
            message=NOT_REACHED.message,
        ),
    ]
    assert NOT_REACHED.message.startswith("Not sent before the send's deadline")
    assert outcome_of(row) == SendOutcome(kind="ses", total=4, sent=1, failed=3)


# --- account-level stops ------------------------------------------------------------------------


def paused_at(start: int) -> Behaviour:
    """SES pauses the account at the batch starting at ``start``."""

    def behaviour(name: str, payload: Any) -> Any:
        if name == SEND_SES_BATCH and payload["start"] == start:
            batch = SesBatch.model_validate(payload)
            LEDGER.decide(batch.ledgerKey, range(batch.count), "SES_SENDING_PAUSED")
            stop = BatchStop(code=FailureCode.SES_SENDING_PAUSED, message="paused")
            return LEDGER.tally(batch.ledgerKey, batch.count, stopped=stop)
        return ordinary(name, payload)

    return behaviour


def stopped_batch(instance_id: str, start: int, count: int) -> FailBatch:
    return FailBatch(
        ledgerKey=ledger_key(instance_id, start),
        count=count,
        code=FailureCode.SES_SENDING_PAUSED,
        message="Not attempted after an earlier batch: paused",
    )


def test_an_account_level_stop_settles_the_lanes_later_batches_without_ses(
    engine: Engine,
) -> None:
    BEHAVIOUR[0] = paused_at(0)

    row = run(engine, SES_ORCHESTRATOR, ses_job(6, 2, 1))

    assert [b.start for b in ses_runs()] == [0]  # batches 2 and 3 never called SES
    assert settled() == [stopped_batch(row.instance_id, 2, 2), stopped_batch(row.instance_id, 4, 2)]
    assert outcome_of(row) == SendOutcome(kind="ses", total=6, sent=0, failed=6)


def test_an_account_level_stop_is_carried_into_the_lanes_next_generation(
    engine: Engine, store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "GENERATION_BATCHES", 2)
    BEHAVIOUR[0] = paused_at(1)  # the last batch of the first generation

    row = run(engine, SES_ORCHESTRATOR, ses_job(6, 1, 1))

    lane_id = f"{row.instance_id}:lane0"
    jobs = lane_inputs(store, lane_id)
    assert [(j.nextBatch, j.sent, j.failed) for j in jobs] == [(0, 0, 0), (2, 1, 1), (4, 1, 3)]
    stop = BatchStop(code=FailureCode.SES_SENDING_PAUSED, message="paused")
    assert [j.stopped for j in jobs] == [None, stop, stop]
    assert [b.start for b in ses_runs()] == [0, 1]
    assert settled() == [stopped_batch(row.instance_id, n, 1) for n in range(2, 6)]
    assert outcome_of(row) == SendOutcome(kind="ses", total=6, sent=1, failed=5)


# --- lanes ---------------------------------------------------------------------------------------


def test_a_lane_that_fails_does_not_fail_the_send(engine: Engine) -> None:
    """A lane can only fail through a bug (here: an activity answering garbage); the parent then
    collects the other lanes one by one and settles the failed lane's batches with FAIL_BATCH."""

    def garbage_for_lane_one(name: str, payload: Any) -> Any:
        if name == SEND_SES_BATCH and payload["start"] == 2:
            LEDGER.decide(payload["ledgerKey"], [0], SENT)  # it did send one
            return {"not": "a batch tally"}
        return ordinary(name, payload)

    BEHAVIOUR[0] = garbage_for_lane_one

    row = run(engine, SES_ORCHESTRATOR, ses_job(4, 2, 2))

    lane = engine.store.get_instance(f"{row.instance_id}:lane1")
    assert lane is not None
    assert lane.status == "Failed"
    (settle,) = settled()
    assert (settle.ledgerKey, settle.count, settle.code) == (
        ledger_key(row.instance_id, 2),
        2,
        FailureCode.BATCH_FAILED,
    )
    assert outcome_of(row) == SendOutcome(kind="ses", total=4, sent=3, failed=1)
    assert calls(FINISH_SEND) == [{"id": row.instance_id, "sent": 3, "failed": 1, "canceled": 0}]


def test_a_send_that_fails_has_its_failure_counted_by_an_activity_first(engine: Engine) -> None:
    """A parent failing with an error no step handles (here: an input it cannot read) calls
    SEND_FAILED (the failed-sends metric and its alert) before it fails: orchestrator code
    replays, so only an activity may count."""
    row = run(engine, SES_ORCHESTRATOR, {"kind": "ses", "total": "not a number"})

    assert row.status == "Failed"
    assert calls(SEND_FAILED) == [row.instance_id]
    assert calls(FINISH_SEND) == []


def test_a_scheduled_send_canceled_before_its_time_tells_finish_send_none_was_settled(
    engine: Engine,
) -> None:
    """Its recipients never reach a batch (which counts what it settles): FINISH_SEND is told
    how many to count as canceled itself; an ordinary finish carries no such count."""

    def canceled(name: str, payload: Any) -> Any:
        return "canceled" if name == READ_CONTROL else ordinary(name, payload)

    BEHAVIOUR[0] = canceled
    when = datetime.now(UTC) + timedelta(days=1)
    started = engine.start_orchestration(
        SES_ORCHESTRATOR, None, json.dumps(ses_job(5, scheduledAt=when.isoformat()))
    )
    _quiet(engine, started)
    assert engine.raise_event(started, "cancel", '"cancel"') == "accepted"
    row = wait_finished(engine, started)

    assert calls(FINISH_SEND) == [
        {"id": started, "sent": 0, "failed": 0, "canceled": 5, "unsettled": 5}
    ]
    assert row.status == "Completed"


def test_a_long_lane_continues_as_new_and_its_counts_carry_over(
    engine: Engine, store: RecordingStore
) -> None:
    generation = lanes.GENERATION_BATCHES
    batches = 2 * generation + generation // 2  # two full generations and a half

    def first_of_each_rejected(name: str, payload: Any) -> Any:
        if name != SEND_SES_BATCH:
            return ordinary(name, payload)
        batch = SesBatch.model_validate(payload)
        LEDGER.decide(batch.ledgerKey, [0], "SES_MESSAGE_REJECTED")
        LEDGER.decide(batch.ledgerKey, range(batch.count), SENT)
        return LEDGER.tally(batch.ledgerKey, batch.count, rate=100.0 + batch.start)

    BEHAVIOUR[0] = first_of_each_rejected

    # one lane of exactly one generation, for comparison
    one = run(engine, SES_ORCHESTRATOR, ses_job(10 * generation, 10, 1))
    (one_history,) = store.generations(f"{one.instance_id}:lane0")
    CALLS.clear()

    row = run(engine, SES_ORCHESTRATOR, ses_job(10 * batches, 10, 1), timeout=60)

    total = 10 * batches
    lane_id = f"{row.instance_id}:lane0"
    histories = store.generations(lane_id)
    assert len(histories) == 3
    scheduled = [
        len([e for e in h if e["EventType"] == EventType.TASK_SCHEDULED]) for h in histories
    ]
    assert scheduled == [generation, generation, generation // 2]
    # the history a replay loads stays about one generation long, not the lane's
    assert max(len(h) for h in histories) <= len(one_history) + 2
    assert history_of(engine, lane_id) == histories[-1]
    # every generation starts where the last one stopped, with its counts and pace
    jobs = lane_inputs(store, lane_id)
    assert [(j.nextBatch, j.sent, j.failed) for j in jobs] == [
        (0, 0, 0),
        (generation, 9 * generation, generation),
        (2 * generation, 18 * generation, 2 * generation),
    ]
    runs = ses_runs()
    assert [(b.start, b.count) for b in runs] == [(10 * n, 10) for n in range(batches)]
    assert [b.startRate for b in runs] == [14.0] + [100.0 + b.start for b in runs[:-1]]
    lane = engine.store.get_instance(lane_id)
    assert lane is not None
    assert json.loads(lane.output or "") == {
        "sent": 9 * batches,
        "failed": batches,
        "batches": batches,
    }
    assert json.loads(lane.custom_status or "")["batchesDone"] == batches
    assert outcome_of(row) == SendOutcome(kind="ses", total=total, sent=9 * batches, failed=batches)
    assert calls(FINISH_SEND) == [
        {"id": row.instance_id, "sent": 9 * batches, "failed": batches, "canceled": 0}
    ]


# --- size: the list is out of the history --------------------------------------------------------


def test_the_list_stays_out_of_the_history_whatever_its_size(
    engine: Engine, store: RecordingStore
) -> None:
    """The activities read their slices of the stored list; no input, output, result or status
    the host holds carries an address, and the largest of them does not grow with the send."""
    blobs = services.blobs()
    mail = Mail(sender="se@aifactory.page", subject="제목", body="본문")
    read: dict[int, list[str]] = {}

    def reads_its_slice(name: str, payload: Any) -> Any:
        if name == SEND_SES_BATCH:
            batch = SesBatch.model_validate(payload)
            stored = StoredSend(blobs, batch.listRef)
            assert stored.mail() == mail
            with _LOCK:
                read[batch.start] = stored.recipients(batch.start, batch.count)
        return ordinary(name, payload)

    BEHAVIOUR[0] = reads_its_slice
    largest: dict[int, int] = {}
    for total, size in ((1_000, 100), (100_000, 2_000)):
        recipients = [f"r{i}@example.com" for i in range(total)]
        ref = f"list-{total:06d}"
        store_send(blobs, ref, recipients, mail)
        read.clear()

        row = run(engine, SES_ORCHESTRATOR, ses_job(total, size, 4, listRef=ref), timeout=120)

        assert outcome_of(row) == SendOutcome(kind="ses", total=total, sent=total, failed=0)
        assert [r for start in sorted(read) for r in read[start]] == recipients
        held = [(what, text) for i, what, text in store.payloads() if i.startswith(row.instance_id)]
        assert held
        assert [(what, text) for what, text in held if "@" in text] == []
        largest[total] = max(len(text) for _, text in held)
    # a hundred times the recipients: a few more digits in the largest value, nothing more
    assert largest[100_000] <= largest[1_000] + 100
    assert store.spill.spills == {"history": 0, "message": 0}


# --- SMTP ----------------------------------------------------------------------------------------


def test_smtp_recipients_are_spread_over_the_configured_connections(engine: Engine) -> None:
    row = run(engine, SMTP_ORCHESTRATOR, smtp_job(100, 3))

    runs = sorted(smtp_runs(), key=lambda b: b.start)
    assert [(b.start, b.count) for b in runs] == [(0, 34), (34, 33), (67, 33)]
    assert [b.ledgerKey for b in runs] == [ledger_key(row.instance_id, b.start) for b in runs]
    assert {(b.listRef, b.provider, b.secretRef) for b in runs} == {("list-1", "GMAIL", "send-1")}
    assert not any("sealedPassword" in p or "password" in p for p in calls(SEND_SMTP_BATCH))
    assert outcome_of(row) == SendOutcome(kind="smtp", total=100, sent=100, failed=0)
    # once every batch is done the send is finished, then the password forgotten
    assert [name for name, _ in CALLS][-2:] == [FINISH_SEND, FORGET_SECRET]
    assert calls(FINISH_SEND) == [{"id": row.instance_id, "sent": 100, "failed": 0, "canceled": 0}]
    assert calls(FORGET_SECRET) == ["send-1"]
    assert calls(RELEASE_QUOTA) == []


def test_an_smtp_send_with_fewer_recipients_than_connections_opens_fewer(
    engine: Engine,
) -> None:
    row = run(engine, SMTP_ORCHESTRATOR, smtp_job(1, 3, provider="NAVER"))

    assert [(b.start, b.count, b.provider) for b in smtp_runs()] == [(0, 1, "NAVER")]
    lanes_ = [
        e
        for e in history_of(engine, row.instance_id)
        if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
    ]
    assert len(lanes_) == 1
    assert calls(FORGET_SECRET) == ["send-1"]
    assert outcome_of(row) == SendOutcome(kind="smtp", total=1, sent=1, failed=0)


# --- pause, resume, cancel (sendmail/sending/control.py) ---------------------------------------


def _held_once(key_start: int, held: str, runs: int = 1) -> Behaviour:
    """The batch starting at ``key_start`` sends its first half, then is held (``held``) on its
    first ``runs`` runs; everything else as :func:`ordinary`."""
    seen: list[int] = []

    def behaviour(name: str, payload: Any) -> Any:
        if name != SEND_SES_BATCH:
            return ordinary(name, payload)
        batch = SesBatch.model_validate(payload)
        if batch.start != key_start or len(seen) >= runs:
            return ordinary(name, payload)
        seen.append(1)
        LEDGER.decide(batch.ledgerKey, range(batch.count // 2), SENT)
        return LEDGER.tally(
            batch.ledgerKey,
            batch.count,
            code=NOT_REACHED.code,
            held=held,
            controlSeq=3,
            rate=batch.maxRate,
        )

    return behaviour


def _quiet(engine: Engine, lane_id: str, seconds: float = 0.4) -> None:
    """Wait until nothing new was called for ``seconds`` (the lane is waiting)."""
    import time

    before = -1
    while len(CALLS) != before:
        before = len(CALLS)
        time.sleep(seconds)
    row = engine.store.get_instance(lane_id)
    assert row is not None
    assert row.status == "Running", row.output


def test_a_paused_lane_runs_nothing_until_woken_then_continues_at_its_batch(
    engine: Engine, store: RecordingStore
) -> None:
    """Held as paused (at control change 3), the lane schedules no activity and no worker runs
    for it; an event of an earlier change does not wake it, the next change's does: it
    continues as new at the same batch with its deadline moved by the time it waited, and the
    batch's next run sends the rest."""
    BEHAVIOUR[0] = _held_once(10, "paused")
    instance_id = engine.start_orchestration(SES_ORCHESTRATOR, None, json.dumps(ses_job(30, 10, 1)))
    lane_id = f"{instance_id}:lane0"
    _quiet(engine, lane_id)
    before = len(CALLS)
    paused = json.loads(engine.store.get_instance(lane_id).custom_status or "")  # type: ignore[union-attr]

    assert engine.raise_event(lane_id, "control-3", '"pause"') == "accepted"
    _quiet(engine, lane_id)
    assert len(CALLS) == before  # still waiting
    assert engine.raise_event(lane_id, "control-4", '"resume"') == "accepted"
    row = wait_finished(engine, instance_id)

    assert [b.start for b in ses_runs()] == [0, 10, 10, 20]
    assert before == 2  # two runs, nothing while paused
    assert (paused["sent"], paused["pending"], paused["batchesDone"]) == (15, 5, 1)
    jobs = lane_inputs(store, lane_id)
    assert [(j.nextBatch, j.sent) for j in jobs] == [(0, 0), (1, 10)]
    assert jobs[0].deadline is not None
    assert jobs[1].deadline is not None
    assert jobs[1].deadline - jobs[0].deadline >= timedelta(seconds=0.4)  # the time it waited
    assert outcome_of(row) == SendOutcome(kind="ses", total=30, sent=30, failed=0)


def test_a_paused_lane_that_hears_nothing_reads_the_record_again_after_a_while(
    engine: Engine, store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up the route failed to deliver costs PAUSE_RECHECK, not the send: the lane runs the
    batch again (which reads the record) after that long, however many times it is held."""
    monkeypatch.setattr(lanes, "PAUSE_RECHECK", timedelta(milliseconds=200))
    BEHAVIOUR[0] = _held_once(0, "paused", runs=3)

    row = run(engine, SES_ORCHESTRATOR, ses_job(20, 10, 1))

    assert [b.start for b in ses_runs()] == [0, 0, 0, 0, 10]
    assert len(store.generations(f"{row.instance_id}:lane0")) == 4  # one per wait
    assert outcome_of(row) == SendOutcome(kind="ses", total=20, sent=20, failed=0)


def test_a_canceled_lane_cancels_what_is_left_without_running_its_later_batches(
    engine: Engine,
) -> None:
    BEHAVIOUR[0] = _held_once(10, "canceled")

    row = run(engine, SES_ORCHESTRATOR, ses_job(40, 10, 1))

    assert [b.start for b in ses_runs()] == [0, 10]
    assert [(f.ledgerKey, f.count, f.code) for f in settled()] == [
        (ledger_key(row.instance_id, start), 10, FailureCode.CANCELED) for start in (10, 20, 30)
    ]
    assert {f.message for f in settled()} == {CANCELED_MESSAGE}
    assert outcome_of(row) == SendOutcome(kind="ses", total=40, sent=15, failed=0, canceled=25)
    assert calls(FINISH_SEND) == [{"id": row.instance_id, "sent": 15, "failed": 0, "canceled": 25}]
