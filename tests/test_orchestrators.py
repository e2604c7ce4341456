"""The orchestrators, driven by the SDK's ``orchestrator_generator_wrapper``.

Batching, the in-flight window, progress in the custom status, result assembly in recipient order,
per-recipient failures, and a batch that fails unexpectedly being reconciled from the ledger.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.durable_functions.testing import orchestrator_generator_wrapper

from activities.names import RECONCILE_BATCH, SEND_SES_BATCH, SEND_SMTP_BATCH
from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from tests.support.durable import FakeOrchestrationContext


def run(orchestrator: Any, context: FakeOrchestrationContext) -> Any:
    steps = list(orchestrator_generator_wrapper(orchestrator(context)))
    return steps[-1]


@pytest.fixture
def ses_orchestrator(app_functions: dict[str, Any]) -> Any:
    return app_functions[SES_ORCHESTRATOR].get_user_function().orchestrator_function


@pytest.fixture
def smtp_orchestrator(app_functions: dict[str, Any]) -> Any:
    return app_functions[SMTP_ORCHESTRATOR].get_user_function().orchestrator_function


def ses_job(recipients: list[str], batch_size: int = 500, in_flight: int = 2) -> dict[str, Any]:
    return {
        "kind": "ses",
        "mail": {"sender": "se@aifactory.page", "subject": "제목", "body": "본문"},
        "recipients": recipients,
        "batchSize": batch_size,
        "maxInFlight": in_flight,
        "maxRatePerBatch": 3.5,
    }


def all_sent(name: str, batch: dict[str, Any]) -> dict[str, Any]:
    return {"messageIds": [f"id-{r}" for r in batch["recipients"]], "failures": []}


def test_recipients_are_split_into_batches_with_a_bounded_window(ses_orchestrator: Any) -> None:
    recipients = [f"r{i}@example.com" for i in range(1234)]
    context = FakeOrchestrationContext(ses_job(recipients, 500, 2), all_sent)

    outcome = run(ses_orchestrator, context)

    sizes = [len(p["recipients"]) for name, p in context.scheduled if name == SEND_SES_BATCH]
    assert sizes == [500, 500, 234]
    assert max(context.window_sizes) == 2
    assert {p["maxRate"] for _, p in context.scheduled} == {3.5}
    keys = [p["ledgerKey"] for _, p in context.scheduled]
    assert keys == ["instance-1:0", "instance-1:1", "instance-1:2"]
    assert outcome["messageIds"] == [f"id-{r}" for r in recipients]
    assert (outcome["total"], outcome["sent"], outcome["failed"]) == (1234, 1234, 0)


def test_progress_is_published_as_batches_finish(ses_orchestrator: Any) -> None:
    recipients = [f"r{i}@example.com" for i in range(25)]
    context = FakeOrchestrationContext(ses_job(recipients, 10, 1), all_sent)

    run(ses_orchestrator, context)

    done = [
        (s["sent"], s["batchesDone"], s["batches"], s["total"]) for s in context.custom_statuses
    ]
    assert done == [(0, 0, 3, 25), (10, 1, 3, 25), (20, 2, 3, 25), (25, 3, 3, 25)]


def test_message_ids_stay_in_recipient_order_when_batches_finish_out_of_order(
    ses_orchestrator: Any,
) -> None:
    recipients = [f"r{i}@example.com" for i in range(9)]
    context = FakeOrchestrationContext(
        ses_job(recipients, 3, 3), all_sent, pick=lambda tasks: tasks[-1]
    )

    outcome = run(ses_orchestrator, context)

    assert outcome["messageIds"] == [f"id-{r}" for r in recipients]


def test_per_recipient_failures_carry_the_address_code_and_message(ses_orchestrator: Any) -> None:
    def some_rejected(name: str, batch: dict[str, Any]) -> dict[str, Any]:
        ids: list[str | None] = [f"id-{r}" for r in batch["recipients"]]
        ids[1] = None
        return {
            "messageIds": ids,
            "failures": [{"index": 1, "code": "SES_MESSAGE_REJECTED", "message": "rejected"}],
        }

    recipients = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    outcome = run(ses_orchestrator, FakeOrchestrationContext(ses_job(recipients, 2), some_rejected))

    assert outcome["messageIds"] == ["id-a@example.com", "id-c@example.com"]
    assert outcome["failures"] == [
        {"recipient": "b@example.com", "code": "SES_MESSAGE_REJECTED", "message": "rejected"},
        {"recipient": "d@example.com", "code": "SES_MESSAGE_REJECTED", "message": "rejected"},
    ]
    assert (outcome["sent"], outcome["failed"]) == (2, 2)


def test_a_batch_that_fails_unexpectedly_is_reconciled_from_the_ledger(
    ses_orchestrator: Any,
) -> None:
    def second_batch_crashes(name: str, payload: dict[str, Any]) -> Any:
        if name == RECONCILE_BATCH:
            assert payload == {"ledgerKey": "instance-1:1", "size": 2}
            return {
                "messageIds": ["id-recorded", None],
                "failures": [{"index": 1, "code": "BATCH_FAILED", "message": "not sent"}],
            }
        if payload["ledgerKey"].endswith(":1"):
            return RuntimeError("storage unavailable")
        return all_sent(name, payload)

    recipients = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    context = FakeOrchestrationContext(ses_job(recipients, 2), second_batch_crashes)

    outcome = run(ses_orchestrator, context)

    assert [name for name, _ in context.scheduled].count(RECONCILE_BATCH) == 1
    assert outcome["messageIds"] == ["id-a@example.com", "id-b@example.com", "id-recorded"]
    assert outcome["failures"] == [
        {"recipient": "d@example.com", "code": "BATCH_FAILED", "message": "not sent"}
    ]


def test_a_batch_that_cannot_even_be_reconciled_is_unknown_and_the_send_goes_on(
    ses_orchestrator: Any,
) -> None:
    def storage_down_for_batch_zero(name: str, payload: dict[str, Any]) -> Any:
        if name == RECONCILE_BATCH or payload["ledgerKey"].endswith(":0"):
            return RuntimeError("table storage unavailable")
        return all_sent(name, payload)

    recipients = ["a@example.com", "b@example.com", "c@example.com"]
    context = FakeOrchestrationContext(ses_job(recipients, 2, 1), storage_down_for_batch_zero)

    outcome = run(ses_orchestrator, context)

    assert [name for name, _ in context.scheduled] == [
        SEND_SES_BATCH,
        RECONCILE_BATCH,
        SEND_SES_BATCH,
    ]
    assert outcome["messageIds"] == ["id-c@example.com"]
    assert [(f["recipient"], f["code"]) for f in outcome["failures"]] == [
        ("a@example.com", "DELIVERY_UNKNOWN"),
        ("b@example.com", "DELIVERY_UNKNOWN"),
    ]


def test_smtp_recipients_are_spread_over_the_configured_connections(smtp_orchestrator: Any) -> None:
    recipients = [f"r{i}@example.com" for i in range(100)]
    job = {
        "kind": "smtp",
        "mail": {"sender": "me@gmail.com", "subject": "s", "body": "b"},
        "provider": "GMAIL",
        "sealedPassword": "gAAAA-sealed-token",
        "recipients": recipients,
        "connections": 3,
    }
    context = FakeOrchestrationContext(job, all_sent)

    outcome = run(smtp_orchestrator, context)

    batches = [p for name, p in context.scheduled if name == SEND_SMTP_BATCH]
    assert [len(b["recipients"]) for b in batches] == [34, 33, 33]
    assert context.window_sizes[0] == 3
    assert {b["sealedPassword"] for b in batches} == {"gAAAA-sealed-token"}
    assert {b["provider"] for b in batches} == {"GMAIL"}
    assert outcome["kind"] == "smtp"
    assert outcome["messageIds"] == [f"id-{r}" for r in recipients]


def test_an_smtp_send_with_fewer_recipients_than_connections_opens_fewer(
    smtp_orchestrator: Any,
) -> None:
    job = {
        "kind": "smtp",
        "mail": {"sender": "me@gmail.com", "subject": "s", "body": "b"},
        "provider": "NAVER",
        "sealedPassword": "token",
        "recipients": ["only@example.com"],
        "connections": 3,
    }
    context = FakeOrchestrationContext(job, all_sent)
    outcome = run(smtp_orchestrator, context)
    assert len(context.scheduled) == 1
    assert outcome["messageIds"] == ["id-only@example.com"]
