"""The metrics and spans the service records (sendmail/platform/telemetry.py), read from an
OpenTelemetry in-memory reader: each count made once, where the outcome is decided, with the
catalogue's names and attributes; the exporter configured lazily, off the cold-start path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sendmail.admission.guard import AccountGuard, MemoryGuardStore
from sendmail.contract.errors import QuotaExceeded, ServiceUnavailable, ValidationFailed
from sendmail.contract.vocabulary import FailureCode
from sendmail.feedback.webhooks.config import WebhookConfig
from sendmail.feedback.webhooks.delivery import Attempt
from sendmail.feedback.webhooks.events import send_event
from sendmail.feedback.webhooks.outbox import MemoryWebhookQueue, Pending, deliver
from sendmail.feedback.webhooks.schedule import MAX_ATTEMPTS
from sendmail.feedback.webhooks.signing import new_secret
from sendmail.platform import telemetry
from sendmail.platform.settings import Settings
from sendmail.sending.ledger import MemorySendLedger
from sendmail.sending.results import BatchReport, Delivery
from sendmail.sending.runner import fail_rest, run_batch

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


class Recorded:
    """What the app recorded since the test began: metric points and ended spans."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(self.spans))
        telemetry.use_providers(MeterProvider(metric_readers=[self.reader]), tracer)

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            (dict(point.attributes or {}), point.value)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
            if isinstance(point, NumberDataPoint)  # counters and gauges: no histogram here
        ]

    def total(self, name: str, **where: Any) -> float:
        return sum(
            value
            for attributes, value in self.points(name)
            if all(attributes.get(k) == v for k, v in where.items())
        )


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    found = Recorded()
    try:
        yield found
    finally:
        telemetry.use_providers(None)


def sender(outcomes: Sequence[str]) -> Callable[[Sequence[str], Callable[[int, str], None]], Any]:
    """A sender answering each recipient as ``outcomes`` says: ``sent``, ``pending`` or a
    failure code."""

    def send(recipients: Sequence[str], on_sent: Callable[[int, str], None]) -> BatchReport:
        deliveries = []
        for position, (recipient, outcome) in enumerate(zip(recipients, outcomes, strict=False)):
            if outcome == "sent":
                on_sent(position, f"id-{recipient}")
                deliveries.append(Delivery.sent(recipient, f"id-{recipient}"))
            elif outcome == "pending":
                deliveries.append(
                    Delivery.postponed(recipient, FailureCode.SES_THROTTLED, "throttled")
                )
            else:
                deliveries.append(Delivery.failed(recipient, FailureCode(outcome), "no"))
        return BatchReport(deliveries)

    return send


def test_a_batch_counts_what_it_settled_once_and_a_retry_only_what_it_adds(
    recorded: Recorded,
) -> None:
    ledger = MemorySendLedger()
    recipients = [f"r{i}@example.com" for i in range(5)]
    first = ["sent", "sent", "SES_MESSAGE_REJECTED", "pending", "sent"]

    run_batch(ledger, "s1:0000000000", recipients, sender(first), transport="ses")
    # The retry is asked only about the pending one (the ledger has the rest): it is sent.
    run_batch(ledger, "s1:0000000000", recipients, sender(["sent"]), transport="ses")

    assert recorded.points("sendmail.recipients.sent") == [({"transport": "ses"}, 4)]
    assert recorded.points("sendmail.recipients.failed") == [
        ({"transport": "ses", "code": "SES_MESSAGE_REJECTED"}, 1)
    ]
    assert recorded.points("sendmail.recipients.canceled") == []


def test_failing_the_rest_counts_cancels_apart_from_failures(recorded: Recorded) -> None:
    ledger = MemorySendLedger()
    run_batch(
        ledger,
        "s1:0000000000",
        ["a@x.org", "b@x.org"],
        sender(["sent", "pending"]),
        transport="smtp",
    )

    fail_rest(ledger, "s1:0000000000", 2, FailureCode.CANCELED, "canceled", transport="smtp")
    fail_rest(ledger, "s1:0000000010", 3, FailureCode.BATCH_FAILED, "late", transport="smtp")
    fail_rest(ledger, "s1:0000000010", 3, FailureCode.BATCH_FAILED, "late", transport="smtp")

    assert recorded.total("sendmail.recipients.sent", transport="smtp") == 1
    assert recorded.points("sendmail.recipients.canceled") == [({"transport": "smtp"}, 1)]
    # the second fail_rest of a batch already settled adds nothing
    assert recorded.points("sendmail.recipients.failed") == [
        ({"transport": "smtp", "code": "BATCH_FAILED"}, 3)
    ]


def test_a_send_counts_when_started_and_finished_and_names_its_span(recorded: Recorded) -> None:
    lines: list[str] = []
    stop = telemetry.on_send_finished(lambda summary: lines.append(summary.line()))
    try:
        with telemetry.span("sendmail.admit", None, route="aws-send"):
            telemetry.send_started("s1", "aws", 1000, "marketing", scheduled=True)
        summary = telemetry.SendSummary("s1", "aws", "canceled", 1000, 0, 0, 1000, 2.0)
        telemetry.send_finished(summary, unsent_canceled=1000)
    finally:
        stop()

    assert recorded.points("sendmail.sends.started") == [
        ({"api": "aws", "category": "marketing", "scheduled": "true"}, 1)
    ]
    assert recorded.points("sendmail.recipients.queued") == [({"api": "aws"}, 1000)]
    assert recorded.points("sendmail.sends.finished") == [({"api": "aws", "state": "canceled"}, 1)]
    assert recorded.points("sendmail.recipients.canceled") == [({"transport": "ses"}, 1000)]
    assert lines == ["send s1 canceled: 0 sent, 0 failed, 1000 canceled of 1000 in 2.0 s"]
    [span] = recorded.spans.get_finished_spans()
    assert span.name == "sendmail.admit"
    assert dict(span.attributes or {}) == {
        "sendmail.route": "aws-send",
        "sendmail.send_id": "s1",
    }


def _none() -> None:
    return None


def test_the_rate_gauge_sums_the_live_batches_and_forgets_ended_ones(recorded: Recorded) -> None:
    # a batch with no known quota (None) counts nothing
    with telemetry.pacing(lambda: 10.0), telemetry.pacing(lambda: 4.5), telemetry.pacing(_none):
        during = recorded.points("sendmail.ses.rate")
    after = recorded.points("sendmail.ses.rate")

    assert during == [({"transport": "ses"}, 14.5)]
    assert after == [({"transport": "ses"}, 0.0)]


def webhook_config() -> WebhookConfig:
    settings = Settings(
        SENDMAIL_WEBHOOK_URLS="https://hooks.example.com/in",
        SENDMAIL_WEBHOOK_SECRET=new_secret(),
    )
    return WebhookConfig.from_settings(settings)


class Answer:
    def __init__(self, attempt: Attempt) -> None:
        self.answer = attempt

    def attempt(self, endpoint: Any, msg_id: str, body: bytes) -> Attempt:
        return self.answer


@pytest.mark.parametrize(
    ("attempt", "number", "outcome"),
    [
        (Attempt("delivered", "HTTP 204", status=204), 1, "delivered"),
        (Attempt("retry", "HTTP 503", status=503), 1, "retried"),
        (Attempt("retry", "timed out"), MAX_ATTEMPTS, "poisoned"),
        (Attempt("gone", "HTTP 410", status=410), 1, "gone"),
    ],
    ids=["delivered", "retried", "poisoned", "gone"],
)
def test_each_webhook_attempt_is_counted_by_outcome(
    recorded: Recorded, attempt: Attempt, number: int, outcome: str
) -> None:
    config = webhook_config()
    event = send_event("send.completed", send_id="s1", timestamp=NOW, state="completed")
    message = Pending(
        id=event.id,
        type=event.type,
        body=event.body().decode(),
        endpoint=config.endpoints[0].fingerprint,
        attempt=number,
    ).model_dump_json()

    deliver(config, Answer(attempt), MemoryWebhookQueue(), message)  # type: ignore[arg-type]

    assert recorded.points("sendmail.webhooks.deliveries") == [
        ({"event": "send.completed", "outcome": outcome}, 1)
    ]


def test_ses_events_are_counted_by_type_and_a_bounce_by_permanence(recorded: Recorded) -> None:
    from api.sns import _count

    events = [
        SimpleNamespace(type="Delivery", suppress=None),
        SimpleNamespace(type="Delivery", suppress=None),
        SimpleNamespace(type="Bounce", suppress="BOUNCE"),
        SimpleNamespace(type="Bounce", suppress=None),
        SimpleNamespace(type="Complaint", suppress="COMPLAINT"),
    ]

    _count(events)

    assert sorted(recorded.points("sendmail.sns.events"), key=str) == sorted(
        [
            ({"type": "Delivery"}, 2),
            ({"type": "Bounce", "permanent": "true"}, 1),
            ({"type": "Bounce", "permanent": "false"}, 1),
            ({"type": "Complaint"}, 1),
        ],
        key=str,
    )


def test_the_guard_counts_a_trip_once_by_its_cause(recorded: Recorded) -> None:
    guard = AccountGuard(MemoryGuardStore(), Settings())

    assert guard.trip("SES reports PROBATION", "enforcement") is not None
    assert guard.trip("SES reports PROBATION", "enforcement") is None  # already tripped

    assert recorded.points("sendmail.guard.trips") == [({"reason": "enforcement"}, 1)]


def test_refusals_have_stable_reasons() -> None:
    """The reason is the metric's attribute: the class's name unless the raiser names it."""
    assert ValidationFailed("bad").reason == "validation_failed"
    assert ValidationFailed("bad", reason="sandbox_recipients").reason == "sandbox_recipients"
    assert QuotaExceeded("later", retry_after=5, reason="backlog_full").reason == "backlog_full"
    assert ServiceUnavailable("later", retry_after=5).reason == "service_unavailable"


def test_without_an_sdk_the_records_cost_nothing_and_fail_nothing() -> None:
    """No provider configured (no connection string, not devhost): the API's no-ops."""
    telemetry.use_providers(None)
    telemetry.recipients_settled("ses", 3, {"SES_MESSAGE_REJECTED": 1, "CANCELED": 2})
    with telemetry.span("sendmail.batch", "s1") as span:
        assert not span.is_recording()


def run_python(code: str, **env: str) -> str:
    import os

    environment = {k: v for k, v in os.environ.items() if k != telemetry.CONNECTION_STRING}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=ROOT,
        env={**environment, **env},
    )
    return result.stdout.strip()


def test_in_azure_the_exporter_is_configured_on_a_thread_at_the_first_record() -> None:
    """With a connection string, the first record starts the distro's configuration on a
    thread of its own and returns: metrics and traces go to Application Insights, the logs stay
    on the host's path (no log handler added), and no auto-instrumentation adds a span per
    Azure SDK call (a ledger write each)."""
    code = """
import logging, threading
from opentelemetry import metrics, trace
from sendmail.platform import telemetry
before = type(metrics.get_meter_provider()).__name__
handlers = len(logging.getLogger().handlers)
telemetry.throttled("ses")
worker = [t for t in threading.enumerate() if t.name == "sendmail-telemetry"]
worker[0].join(60)
from azure.core.settings import settings
print(before, len(worker), type(metrics.get_meter_provider()).__name__,
      type(trace.get_tracer_provider()).__name__, len(logging.getLogger().handlers) - handlers,
      settings.tracing_implementation())
"""
    connection = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/"
    )
    out = run_python(code, APPLICATIONINSIGHTS_CONNECTION_STRING=connection)

    assert out.splitlines()[-1] == "_ProxyMeterProvider 1 MeterProvider TracerProvider 0 None"


def test_without_a_connection_string_or_when_switched_off_nothing_is_configured() -> None:
    code = """
import threading
from opentelemetry import metrics
from sendmail.platform import telemetry
telemetry.throttled("ses")
print(sum(t.name == "sendmail-telemetry" for t in threading.enumerate()),
      type(metrics.get_meter_provider()).__name__)
"""
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000"

    assert run_python(code) == "0 _ProxyMeterProvider"
    switched_off = run_python(
        code,
        APPLICATIONINSIGHTS_CONNECTION_STRING=connection,
        SENDMAIL_TELEMETRY_ENABLED="false",
    )
    assert switched_off == "0 _ProxyMeterProvider"


def test_a_failing_send_is_finished_with_its_ledgers_counts_and_counted_failed(
    recorded: Recorded, app_functions: dict[str, Any]
) -> None:
    """send_failed (called by the orchestration before it fails) finishes the record — so
    retention purges the send once old enough — with what the ledger holds, and counts a send
    ended ``failed``; recipients without an outcome are in none of the counts."""
    from sendmail import services
    from sendmail.sending.jobs import ledger_key
    from sendmail.sending.sends import SendRecord

    record = SendRecord(
        id="s3", kind="ses", total=5, lanes=1, batch_size=2, list_ref="s3", created=NOW
    )
    services.sends().create(record)
    ledger = services.ledger()
    ledger.record_many(ledger_key("s3", 0), {0: "m0", 1: "m1"})
    ledger.record_failures(
        ledger_key("s3", 2), {0: ("CANCELED", "canceled"), 1: ("SES_MESSAGE_REJECTED", "no")}
    )

    app_functions["send_failed"].get_user_function()("s3")

    stored = services.sends().get("s3")
    assert stored is not None
    assert stored.finished is not None
    assert (stored.sent, stored.failed, stored.canceled) == (2, 1, 1)
    assert recorded.points("sendmail.sends.finished") == [({"api": "aws", "state": "failed"}, 1)]
    # the one recipient no batch settled is counted, so that pending comes back to zero
    assert recorded.points("sendmail.recipients.failed") == [
        ({"transport": "ses", "code": "SEND_FAILED"}, 1)
    ]


def test_a_batch_that_raises_part_way_counts_what_went_out_and_its_rerun_does_not_again(
    recorded: Recorded,
) -> None:
    ledger = MemorySendLedger()
    recipients = [f"r{i}@example.com" for i in range(4)]

    def sends_two_then_breaks(
        todo: Sequence[str], on_sent: Callable[[int, str], None]
    ) -> BatchReport:
        on_sent(0, "m0")
        on_sent(1, "m1")
        raise ConnectionError("the network went away")

    with pytest.raises(ConnectionError):
        run_batch(ledger, "s1:0000000000", recipients, sends_two_then_breaks, transport="ses")
    run_batch(ledger, "s1:0000000000", recipients, sender(["sent", "sent"]), transport="ses")

    assert recorded.points("sendmail.recipients.sent") == [({"transport": "ses"}, 4)]


def test_a_span_ending_in_an_error_keeps_its_type_and_reason_never_its_message(
    recorded: Recorded,
) -> None:
    """Messages name addresses (a refused sender, unverified recipients): the span gets no
    exception event and no status text but the type."""
    with pytest.raises(ValidationFailed), telemetry.span("sendmail.admit", None, route="aws-send"):
        raise ValidationFailed("not verified: stranger@example.com", reason="sandbox_recipients")

    [span] = recorded.spans.get_finished_spans()
    assert span.events == ()
    assert span.status.description == "ValidationFailed"
    assert dict(span.attributes or {}) == {
        "sendmail.route": "aws-send",
        "sendmail.error": "ValidationFailed",
        "sendmail.reason": "sandbox_recipients",
    }
    assert "@" not in repr(span.to_json())


def test_a_recorder_that_fails_never_fails_its_caller(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Telemetry runs after mail went out and before a tally is returned: it must not raise."""

    def broken() -> Any:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(telemetry, "_get", broken)

    telemetry.recipients_settled("ses", 3, {})
    telemetry.recipients_settled("ses", 3, {})
    with telemetry.pacing(lambda: 1.0):
        pass

    failures = [r for r in caplog.records if "recipients_settled failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None  # the first with its traceback, then one line each
    assert not failures[1].exc_info


def test_what_is_recorded_while_the_exporter_is_configured_is_recorded_once_it_is() -> None:
    """The first records of an instance are its first admission's: OpenTelemetry's proxies
    would drop them while the distro is configured (half a second), and the derived pending
    would go negative by that send on every new instance. They are held and replayed. Here the
    distro's configure is a stand-in that takes 0.5 s and sets an in-memory SDK."""
    code = """
import sys, threading, time, types
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
def configure_azure_monitor(**kwargs):
    time.sleep(0.5)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
sys.modules["azure.monitor.opentelemetry"] = types.SimpleNamespace(
    configure_azure_monitor=configure_azure_monitor)
from sendmail.platform import telemetry
telemetry.send_started("s1", "aws", 1000, "transactional", False)  # held
[t.join(10) for t in threading.enumerate() if t.name == "sendmail-telemetry"]
telemetry.recipients_settled("ses", 998, {"SES_MESSAGE_REJECTED": 2})  # straight through
points = {m.name: sum(p.value for p in m.data.data_points)
          for r in reader.get_metrics_data().resource_metrics
          for s in r.scope_metrics for m in s.metrics}
print(points["sendmail.sends.started"], points["sendmail.recipients.queued"],
      points["sendmail.recipients.sent"], points["sendmail.recipients.failed"])
"""
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000"

    out = run_python(code, APPLICATIONINSIGHTS_CONNECTION_STRING=connection)

    assert out.splitlines()[-1] == "1 1000 998 2"
