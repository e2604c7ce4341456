"""The orchestrations, run by the real SDK under devhost's engine with scripted activities.

Splitting into lanes and batches, results in recipient order, progress, failures per recipient,
explicit retries and reconciling, and pending recipients carried from run to run until the
send's deadline — each replayed from real histories, with the host applying actions as Azure's
shim does (see tests/devhost/test_shim.py for that part on its own).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from activities.names import (
    FORGET_SECRET,
    RECONCILE_BATCH,
    RELEASE_QUOTA,
    SEND_SES_BATCH,
    SEND_SMTP_BATCH,
)
from devhost.durable.engine import Engine
from devhost.durable.history import EventType, parse_timestamp
from orchestrators import lanes
from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from orchestrators.send import bp as send_orchestrators
from tests.support.engine import output, run, running_engine

app = df.DFApp()
app.register_functions(send_orchestrators)

Behaviour = Callable[[str, dict[str, Any]], Any]
CALLS: list[tuple[str, Any]] = []
_LOCK = threading.Lock()


def positions(batch: dict[str, Any]) -> list[tuple[int, str]]:
    """(index in the batch, address) for each recipient of this run."""
    indices = batch.get("indices") or range(len(batch["recipients"]))
    return list(zip(indices, batch["recipients"], strict=True))


def size(batch: dict[str, Any]) -> int:
    return int(batch.get("size") or len(batch["recipients"]))


def all_sent(name: str, batch: dict[str, Any]) -> Any:
    ids: list[str | None] = [None] * size(batch)
    for index, recipient in positions(batch):
        ids[index] = f"id-{recipient}"
    return {"messageIds": ids, "failures": [], "rate": batch.get("maxRate")}


BEHAVIOUR: list[Behaviour] = [all_sent]


def _answer(name: str, payload: dict[str, Any]) -> Any:
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


@app.function_name(RECONCILE_BATCH)
@app.activity_trigger(input_name="batch")
def reconcile(batch: dict[str, Any]) -> Any:
    return _answer(RECONCILE_BATCH, batch)


@app.function_name(RELEASE_QUOTA)
@app.activity_trigger(input_name="send")
def release(send: str) -> None:
    """The app's functions must all exist: a call to a missing one is never answered on Azure
    (devhost.durable.shim.call_refusal)."""


@app.function_name(FORGET_SECRET)
@app.activity_trigger(input_name="ref")
def forget(ref: str) -> None:
    CALLS.append((FORGET_SECRET, ref))


@pytest.fixture
def engine(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(lanes, "ACTIVITY_RETRY_DELAY", timedelta(milliseconds=30))
    monkeypatch.setattr(lanes, "FIRST_STALL_WAIT", timedelta(milliseconds=100))
    monkeypatch.setattr(lanes, "MAX_STALL_WAIT", timedelta(milliseconds=250))
    monkeypatch.setattr(lanes, "LAST_RUN", timedelta(milliseconds=100))
    CALLS.clear()
    BEHAVIOUR[0] = all_sent
    with running_engine(app, tmp_path) as running:
        yield running


def ses_job(recipients: list[str], batch_size: int = 500, lanes_: int = 2, **kw: Any) -> Any:
    return {
        "kind": "ses",
        "mail": {"sender": "se@aifactory.page", "subject": "제목", "body": "본문"},
        "recipients": recipients,
        "batchSize": batch_size,
        "lanes": lanes_,
        "maxRate": 14.0,
        "deadlineSeconds": 3600,
        **kw,
    }


def calls(name: str) -> list[Any]:
    return [payload for called, payload in CALLS if called == name]


def history_of(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    return engine.store.get_history(instance_id)


# --- splitting and assembling ------------------------------------------------------------------


def test_recipients_are_split_evenly_over_the_lanes_then_into_batches(engine: Engine) -> None:
    recipients = [f"r{i}@example.com" for i in range(1234)]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 500, 2))

    outcome = output(row)
    batches = sorted(calls(SEND_SES_BATCH), key=lambda b: int(b["ledgerKey"].split(":")[-1]))
    # two lanes of 617: each in a batch of 500 and one of 117 (even shares finish together)
    assert [len(b["recipients"]) for b in batches] == [500, 117, 500, 117]
    assert [b["ledgerKey"] for b in batches] == [f"{row.instance_id}:{n}" for n in range(4)]
    assert [r for b in batches for r in b["recipients"]] == recipients
    assert {b["maxRate"] for b in batches} == {7.0}  # the account's 14/s shared by two lanes
    started = parse_timestamp(history_of(engine, row.instance_id)[0]["Timestamp"])
    deadlines = {parse_timestamp(b["deadline"]) for b in batches}
    assert deadlines == {started + timedelta(seconds=3600)}
    assert outcome["messageIds"] == [f"id-{r}" for r in recipients]
    assert (outcome["total"], outcome["sent"], outcome["failed"]) == (1234, 1234, 0)


def test_lanes_are_sub_orchestrations_with_ids_derived_from_the_send(engine: Engine) -> None:
    row = run(engine, SES_ORCHESTRATOR, ses_job([f"r{i}@example.com" for i in range(30)], 10, 3))
    lanes_ = [
        e
        for e in history_of(engine, row.instance_id)
        if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
    ]
    assert [e["InstanceId"] for e in lanes_] == [f"{row.instance_id}:lane{n}" for n in range(3)]


def test_progress_is_published_by_the_parent_and_by_each_lane(engine: Engine) -> None:
    recipients = [f"r{i}@example.com" for i in range(25)]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 10, 1))

    assert json.loads(row.custom_status or "") == {
        "total": 25,
        "sent": 25,
        "failed": 0,
        "pending": 0,
        "batches": 3,
        "batchesDone": 3,
        "lanes": 1,
    }
    lane = engine.store.get_instance(f"{row.instance_id}:lane0")
    assert lane is not None
    assert json.loads(lane.custom_status or "") == {
        "total": 25,
        "sent": 25,
        "failed": 0,
        "pending": 0,
        "batches": 3,
        "batchesDone": 3,
        "lanes": 0,
    }


def test_per_recipient_failures_carry_the_address_code_and_message(engine: Engine) -> None:
    def second_rejected(name: str, batch: dict[str, Any]) -> Any:
        ids: list[str | None] = [f"id-{r}" for r in batch["recipients"]]
        ids[1] = None
        return {
            "messageIds": ids,
            "failures": [{"index": 1, "code": "SES_MESSAGE_REJECTED", "message": "rejected"}],
        }

    BEHAVIOUR[0] = second_rejected
    recipients = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]

    outcome = output(run(engine, SES_ORCHESTRATOR, ses_job(recipients, 2, 2)))

    assert outcome["messageIds"] == ["id-a@example.com", "id-c@example.com"]
    assert outcome["failures"] == [
        {"recipient": "b@example.com", "code": "SES_MESSAGE_REJECTED", "message": "rejected"},
        {"recipient": "d@example.com", "code": "SES_MESSAGE_REJECTED", "message": "rejected"},
    ]
    assert (outcome["sent"], outcome["failed"]) == (2, 2)


# --- unexpected failures: explicit retries, then the ledger -----------------------------------


def test_an_activity_that_fails_once_is_run_again_after_a_timer(engine: Engine) -> None:
    failures = {"left": 1}

    def flaky(name: str, batch: dict[str, Any]) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            return RuntimeError("worker lost")
        return all_sent(name, batch)

    BEHAVIOUR[0] = flaky
    row = run(engine, SES_ORCHESTRATOR, ses_job(["a@example.com"], 10, 1))

    assert output(row)["messageIds"] == ["id-a@example.com"]
    lane = history_of(engine, f"{row.instance_id}:lane0")
    kinds = [e["EventType"] for e in lane if e["EventType"] in (4, 10)]
    assert kinds == [EventType.TASK_SCHEDULED, EventType.TIMER_CREATED, EventType.TASK_SCHEDULED]
    assert not any("Retry" in json.dumps(e) for e in lane)  # no *_with_retry anywhere


def test_a_batch_that_keeps_failing_is_reconciled_from_the_ledger(engine: Engine) -> None:
    def second_batch_crashes(name: str, payload: dict[str, Any]) -> Any:
        if name == RECONCILE_BATCH:
            return {
                "messageIds": ["id-recorded", None],
                "failures": [{"index": 1, "code": "BATCH_FAILED", "message": "not sent"}],
            }
        if payload["ledgerKey"].endswith(":1"):
            return RuntimeError("storage unavailable")
        return all_sent(name, payload)

    BEHAVIOUR[0] = second_batch_crashes
    recipients = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]

    job = ses_job(recipients, 2, 1, deadlineSeconds=0.8)
    outcome = output(run(engine, SES_ORCHESTRATOR, job))

    # run again and again (30, 60, 120 ms ...) until the deadline, then the ledger decides
    assert len([b for b in calls(SEND_SES_BATCH) if b["ledgerKey"].endswith(":1")]) >= 3
    assert [p["size"] for p in calls(RECONCILE_BATCH)] == [2]
    assert outcome["messageIds"] == ["id-a@example.com", "id-b@example.com", "id-recorded"]
    assert outcome["failures"] == [
        {"recipient": "d@example.com", "code": "BATCH_FAILED", "message": "not sent"}
    ]


def test_a_batch_that_cannot_even_be_reconciled_is_unknown_and_the_send_goes_on(
    engine: Engine,
) -> None:
    def storage_down_for_batch_zero(name: str, payload: dict[str, Any]) -> Any:
        if name == RECONCILE_BATCH or payload["ledgerKey"].endswith(":0"):
            return RuntimeError("table storage unavailable")
        return all_sent(name, payload)

    BEHAVIOUR[0] = storage_down_for_batch_zero
    recipients = ["a@example.com", "b@example.com", "c@example.com"]

    outcome = output(run(engine, SES_ORCHESTRATOR, ses_job(recipients, 2, 1, deadlineSeconds=0.5)))

    assert outcome["messageIds"] == ["id-c@example.com"]
    assert [(f["recipient"], f["code"]) for f in outcome["failures"]] == [
        ("a@example.com", "DELIVERY_UNKNOWN"),
        ("b@example.com", "DELIVERY_UNKNOWN"),
    ]


# --- pending recipients: time, never recipients ------------------------------------------------


def pending_first(rounds: int, *, stalled: bool, code: str = "SES_THROTTLED") -> Behaviour:
    """Each batch leaves its odd recipients pending for ``rounds`` runs, then sends them."""
    seen: dict[str, int] = {}

    def behaviour(name: str, batch: dict[str, Any]) -> Any:
        key = batch["ledgerKey"]
        run_no = seen[key] = seen.get(key, 0) + 1
        ids: list[str | None] = [None] * size(batch)
        pending = []
        for i, recipient in positions(batch):
            if i % 2 and run_no <= rounds:
                pending.append({"index": i, "code": code, "message": "kept throttling"})
            else:
                ids[i] = f"id-{recipient}"
        return {
            "messageIds": ids,
            "failures": [],
            "pending": pending,
            "rate": 3.0 + run_no,
            "stalled": stalled,
        }

    return behaviour


def test_pending_recipients_are_sent_by_the_next_run_of_their_batch(engine: Engine) -> None:
    BEHAVIOUR[0] = pending_first(2, stalled=False)
    recipients = [f"r{i}@example.com" for i in range(6)]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 6, 1))

    outcome = output(row)
    assert outcome["messageIds"] == [f"id-{r}" for r in recipients]
    runs = calls(SEND_SES_BATCH)
    assert [b["indices"] for b in runs] == [None, [1, 3, 5], [1, 3, 5]]
    # a later run carries only the pending recipients (the history stays small in a storm)
    assert runs[1]["recipients"] == ["r1@example.com", "r3@example.com", "r5@example.com"]
    assert {b["size"] for b in runs} == {6}
    assert [b["startRate"] for b in runs] == [
        14.0,
        4.0,
        5.0,
    ]  # each run starts where the last ended
    lane = history_of(engine, f"{row.instance_id}:lane0")
    assert not any(e["EventType"] == EventType.TIMER_CREATED for e in lane)  # progress: no wait


def test_a_stalled_batch_waits_on_a_durable_timer_that_grows(engine: Engine) -> None:
    BEHAVIOUR[0] = pending_first(3, stalled=True)
    recipients = ["a@example.com", "b@example.com"]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 2, 1))

    assert output(row)["messageIds"] == ["id-a@example.com", "id-b@example.com"]
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
    inner = pending_first(1, stalled=True)

    def hold_second_run(name: str, batch: dict[str, Any]) -> Any:
        if batch.get("indices") is not None:
            gate.wait(10)
        return inner(name, batch)

    BEHAVIOUR[0] = hold_second_run
    recipients = [f"r{i}@example.com" for i in range(4)]
    instance_id = engine.start_orchestration(
        SES_ORCHESTRATOR, None, json.dumps(ses_job(recipients, 4, 1))
    )
    try:
        for _ in range(500):
            lane = engine.store.get_instance(f"{instance_id}:lane0")
            status = json.loads(lane.custom_status or "{}") if lane else {}
            if status.get("pending"):
                break
            threading.Event().wait(0.02)
        assert status["pending"] == 2
    finally:
        gate.set()


def test_at_the_deadline_pending_recipients_fail_with_their_last_code(engine: Engine) -> None:
    BEHAVIOUR[0] = pending_first(1000, stalled=True, code="SES_ERROR")
    recipients = [f"r{i}@example.com" for i in range(4)]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 4, 1, deadlineSeconds=1.0))

    outcome = output(row)
    assert outcome["messageIds"] == ["id-r0@example.com", "id-r2@example.com"]
    assert [(f["recipient"], f["code"]) for f in outcome["failures"]] == [
        ("r1@example.com", "SES_ERROR"),
        ("r3@example.com", "SES_ERROR"),
    ]
    # it kept trying (timers of 100, 200, 250 ms ...) and made a last run shortly before the
    # deadline instead of giving up when the next wait would have crossed it
    runs = calls(SEND_SES_BATCH)
    assert len(runs) >= 2
    lane = history_of(engine, f"{row.instance_id}:lane0")
    started = parse_timestamp(history_of(engine, row.instance_id)[0]["Timestamp"])
    last_timer = max(
        parse_timestamp(e["FireAt"]) for e in lane if e["EventType"] == EventType.TIMER_CREATED
    )
    assert last_timer <= started + timedelta(seconds=1.0) - timedelta(milliseconds=100)


def test_a_batch_whose_turn_comes_after_the_last_chance_is_failed_without_a_run(
    engine: Engine,
) -> None:
    BEHAVIOUR[0] = pending_first(1000, stalled=True)
    recipients = [f"r{i}@example.com" for i in range(4)]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 2, 1, deadlineSeconds=1.0))

    # batch 0 used the time up; batch 1 never reached SES, and says why
    assert {b["ledgerKey"].rsplit(":", 1)[1] for b in calls(SEND_SES_BATCH)} == {"0"}
    outcome = output(row)
    assert outcome["messageIds"] == ["id-r0@example.com"]
    failures = {f["recipient"]: f for f in outcome["failures"]}
    assert sorted(failures) == ["r1@example.com", "r2@example.com", "r3@example.com"]
    assert {f["code"] for f in failures.values()} == {"SES_THROTTLED"}
    assert failures["r2@example.com"]["message"].startswith("Not sent before the send's deadline")


def test_an_account_level_stop_skips_the_lanes_later_batches(engine: Engine) -> None:
    def paused(name: str, batch: dict[str, Any]) -> Any:
        return {
            "messageIds": [None] * size(batch),
            "failures": [
                {"index": i, "code": "SES_SENDING_PAUSED", "message": "paused"}
                for i, _ in positions(batch)
            ],
            "stopped": {"code": "SES_SENDING_PAUSED", "message": "paused"},
        }

    BEHAVIOUR[0] = paused
    recipients = [f"r{i}@example.com" for i in range(6)]

    outcome = output(run(engine, SES_ORCHESTRATOR, ses_job(recipients, 2, 1)))

    assert len(calls(SEND_SES_BATCH)) == 1  # batches 2 and 3 never called SES
    assert {f["code"] for f in outcome["failures"]} == {"SES_SENDING_PAUSED"}
    assert len(outcome["failures"]) == 6
    assert outcome["failures"][-1]["message"].startswith("Not attempted after an earlier batch")


def test_an_earlier_specific_failure_survives_a_later_reconcile(engine: Engine) -> None:
    seen = {"runs": 0}

    def rejected_then_crashing(name: str, batch: dict[str, Any]) -> Any:
        if name == RECONCILE_BATCH:
            return {
                "messageIds": [None, None],
                "failures": [
                    {"index": i, "code": "BATCH_FAILED", "message": "not sent"} for i in (0, 1)
                ],
            }
        seen["runs"] += 1
        if seen["runs"] == 1:  # r0 rejected for good, r1 pending
            return {
                "messageIds": [None, None],
                "failures": [{"index": 0, "code": "SES_MESSAGE_REJECTED", "message": "no"}],
                "pending": [{"index": 1, "code": "SES_THROTTLED", "message": "later"}],
            }
        return RuntimeError("worker lost")

    BEHAVIOUR[0] = rejected_then_crashing
    job = ses_job(["r0@example.com", "r1@example.com"], 2, 1, deadlineSeconds=0.6)

    outcome = output(run(engine, SES_ORCHESTRATOR, job))

    assert [(f["recipient"], f["code"]) for f in outcome["failures"]] == [
        ("r0@example.com", "SES_MESSAGE_REJECTED"),
        ("r1@example.com", "BATCH_FAILED"),
    ]


def test_a_lane_that_fails_does_not_fail_the_send(engine: Engine) -> None:
    """A lane can only fail through a bug (here: an activity answering garbage); the parent then
    collects the other lanes one by one and asks the ledger about the failed lane's batches."""

    def garbage_for_lane_one(name: str, batch: dict[str, Any]) -> Any:
        if name == RECONCILE_BATCH:
            return {
                "messageIds": ["id-recorded"] + [None] * (batch["size"] - 1),
                "failures": [
                    {"index": i, "code": "BATCH_FAILED", "message": "not sent"}
                    for i in range(1, batch["size"])
                ],
            }
        if batch["ledgerKey"].endswith(":1"):
            return {"not": "a batch result"}
        return all_sent(name, batch)

    BEHAVIOUR[0] = garbage_for_lane_one
    recipients = [f"r{i}@example.com" for i in range(4)]

    row = run(engine, SES_ORCHESTRATOR, ses_job(recipients, 2, 2))

    outcome = output(row)
    lane = engine.store.get_instance(f"{row.instance_id}:lane1")
    assert lane is not None
    assert lane.status == "Failed"
    assert outcome["messageIds"] == ["id-r0@example.com", "id-r1@example.com", "id-recorded"]
    assert [(f["recipient"], f["code"]) for f in outcome["failures"]] == [
        ("r3@example.com", "BATCH_FAILED")
    ]


# --- SMTP ------------------------------------------------------------------------------------


def test_smtp_recipients_are_spread_over_the_configured_connections(engine: Engine) -> None:
    recipients = [f"r{i}@example.com" for i in range(100)]
    job = {
        "kind": "smtp",
        "mail": {"sender": "me@gmail.com", "subject": "s", "body": "b"},
        "provider": "GMAIL",
        "secretRef": "send-1",
        "recipients": recipients,
        "connections": 3,
    }

    outcome = output(run(engine, SMTP_ORCHESTRATOR, job))

    batches = sorted(calls(SEND_SMTP_BATCH), key=lambda b: b["ledgerKey"])
    assert [len(b["recipients"]) for b in batches] == [34, 33, 33]
    assert {b["secretRef"] for b in batches} == {"send-1"}
    assert not any("sealedPassword" in b for b in batches)
    # once every batch is done, the password is forgotten: one last activity
    assert calls(FORGET_SECRET) == ["send-1"]
    assert {b["provider"] for b in batches} == {"GMAIL"}
    assert outcome["kind"] == "smtp"
    assert outcome["messageIds"] == [f"id-{r}" for r in recipients]


def test_an_smtp_send_with_fewer_recipients_than_connections_opens_fewer(engine: Engine) -> None:
    job = {
        "kind": "smtp",
        "mail": {"sender": "me@gmail.com", "subject": "s", "body": "b"},
        "provider": "NAVER",
        "sealedPassword": "token",  # a send started before the secret store: still runs
        "recipients": ["only@example.com"],
        "connections": 3,
    }
    outcome = output(run(engine, SMTP_ORCHESTRATOR, job))
    assert len(calls(SEND_SMTP_BATCH)) == 1
    assert calls(SEND_SMTP_BATCH)[0]["sealedPassword"] == "token"
    assert calls(FORGET_SECRET) == []  # nothing was stored for it
    assert outcome["messageIds"] == ["id-only@example.com"]
