"""Calling the app's HTTP functions as the Functions host does, and what they need around them.

``call`` builds a ``func.HttpRequest`` and runs the registered function (with a Durable client
when it takes one); ``StubQuota`` stands in for SES's ``GetSendQuota`` in the admission check
(SES itself is exercised against moto in test_ses.py).

A send's results are not in the Durable history: its list and content are in the blob store, its
record in the sends table, each recipient's outcome in the send ledger (one partition per batch,
``jobs.ledger_key(id, batch start)``), and the orchestration's output holds counts only. So
faking a finished send here writes what the lanes would have written — ``store_finished`` for a
send the test makes up, ``record_outcomes`` for one a route stored, ``FinishingClient`` for one
the request under test starts — and ``completed`` is the Completed status with its counts.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from sendmail import services
from sendmail.contract.vocabulary import Kind
from sendmail.sending.jobs import Mail, batch_of, ledger_key
from sendmail.sending.lists import StoredSend, store_send
from sendmail.sending.sends import SendRecord
from sendmail.sending.ses import SendQuota
from tests.support.durable import FakeDurableClient, status

BASE = "http://localhost:7071"

#: One recipient's outcome as the lanes record it: a Message-ID (sent), (code, message)
#: (failed), or None (no outcome recorded: pending while the send runs, unknown once it ended).
Outcome = str | tuple[str, str] | None

#: The finished send ``completed`` stands for by default: one recipient sent, one rejected.
RECIPIENTS = ["a@example.com", "b@example.com"]
OUTCOMES: dict[int, Outcome] = {0: "0101-abc", 1: ("SES_MESSAGE_REJECTED", "x")}


class StubQuota:
    def __init__(self, quota: SendQuota | None = None) -> None:
        self.quota = quota or SendQuota(max_24_hour_send=-1, max_send_rate=14, sent_last_24_hours=0)
        self.reads = 0

    def get_quota(self) -> SendQuota:
        self.reads += 1
        return self.quota


def call(
    app_functions: dict[str, Any],
    name: str,
    path: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    client: FakeDurableClient | None = None,
) -> func.HttpResponse:
    """Run HTTP function ``name`` on a request for ``path`` (with the query ``params``, which
    the host hands over parsed too); ``body`` is bytes or JSON."""
    user_function = app_functions[name].get_user_function()
    raw = (
        body
        if isinstance(body, bytes)
        else (json.dumps(body).encode() if body is not None else b"")
    )
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    req = func.HttpRequest(
        method=method,
        url=f"{BASE}{path}{query}",
        headers=headers or {},
        params=params or {},
        route_params=route_params or {},
        body=raw,
    )
    if client is not None:
        result = user_function.client_function(req=req, client=client)
    else:
        result = user_function(req)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    assert isinstance(result, func.HttpResponse)
    return result


def orchestrator_of(kind: Kind) -> str:
    return SES_ORCHESTRATOR if kind == "ses" else SMTP_ORCHESTRATOR


def completed(
    instance_id: str,
    name: str = SES_ORCHESTRATOR,
    *,
    total: int = 2,
    sent: int = 1,
    failed: int = 1,
) -> DurableOrchestrationStatus:
    """A Completed send's status: its output is the send's counts (``SendOutcome``), nothing
    per recipient."""
    kind = "ses" if name == SES_ORCHESTRATOR else "smtp"
    output = {"kind": kind, "total": total, "sent": sent, "failed": failed}
    return status(instance_id, name, "Completed", output=output)


def store_finished(
    instance_id: str,
    recipients: Sequence[str] = RECIPIENTS,
    outcomes: Mapping[int, Outcome] = OUTCOMES,
    *,
    kind: Kind = "ses",
    lanes: int = 1,
    batch_size: int | None = None,
    mail: Mail | None = None,
) -> SendRecord:
    """Store a send as the send routes do (list and content in the blobs, its record in the
    sends table) and its recipients' ``outcomes`` (index in the send -> outcome) in the ledger
    as its lanes would. Returns the record."""
    total = len(recipients)
    record = SendRecord(
        id=instance_id,
        kind=kind,
        total=total,
        lanes=lanes,
        batch_size=batch_size or max(1, -(-total // lanes)),
        list_ref=instance_id,
        created=datetime(2026, 11, 29, 10, tzinfo=UTC),
    )
    content = mail or Mail(sender="se@aifactory.page", subject="s", body="b")
    store_send(services.blobs(), instance_id, list(recipients), content)
    services.sends().create(record)
    record_outcomes(instance_id, outcomes)
    return record


def record_outcomes(instance_id: str, outcomes: Mapping[int, Outcome]) -> tuple[int, int]:
    """Write ``outcomes`` of the stored send ``instance_id`` into the ledger, each under its
    batch's key (the plan in the send's record); returns (sent, failed)."""
    record = services.sends().get(instance_id)
    assert record is not None, f"no stored send {instance_id}"
    ledger = services.ledger()
    sent = failed = 0
    for index, outcome in sorted(outcomes.items()):
        if outcome is None:
            continue
        first, _ = batch_of(record.total, record.lanes, record.batch_size, index)
        key = ledger_key(instance_id, first)
        if isinstance(outcome, str):
            ledger.record(key, index - first, outcome)
            sent += 1
        else:
            ledger.record_failures(key, {index - first: outcome})
            failed += 1
    return sent, failed


def finished(
    instance_id: str,
    recipients: Sequence[str] = RECIPIENTS,
    outcomes: Mapping[int, Outcome] = OUTCOMES,
    *,
    kind: Kind = "ses",
    **plan: Any,
) -> DurableOrchestrationStatus:
    """A send that ran and completed: stored (``store_finished``) and its Completed status."""
    record = store_finished(instance_id, recipients, outcomes, kind=kind, **plan)
    sent = sum(isinstance(o, str) for o in outcomes.values())
    failed = sum(isinstance(o, tuple) for o in outcomes.values())
    return completed(
        instance_id, orchestrator_of(kind), total=record.total, sent=sent, failed=failed
    )


class FinishingClient(FakeDurableClient):
    """A task hub whose sends run at once: ``start_new`` records each recipient's outcome in
    the ledger, as the lanes would (``outcome(index, address)`` decides it), and the instance
    then reads ``runtime`` (Completed: with its counts) after ``running`` reads as Running."""

    def __init__(
        self,
        outcome: Callable[[int, str], Outcome],
        *,
        running: int = 0,
        runtime: str = "Completed",
    ) -> None:
        super().__init__()
        self.outcome = outcome
        self.running = running
        self.runtime = runtime

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any = None,
    ) -> str:
        started = await super().start_new(orchestration_function_name, instance_id, client_input)
        record = services.sends().get(started)
        assert record is not None, "the route starts a send before storing it"
        addresses = StoredSend(services.blobs(), record.list_ref).recipients(0, record.total)
        sent, failed = record_outcomes(
            started, {i: self.outcome(i, address) for i, address in enumerate(addresses)}
        )
        name = orchestration_function_name
        ran = [status(started, name, "Running")] * self.running
        if self.runtime == "Completed":
            end = completed(started, name, total=record.total, sent=sent, failed=failed)
        else:
            end = status(started, name, self.runtime)
        self.statuses[started] = [*ran, end]
        return started
