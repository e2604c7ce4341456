"""Webhook events on their way: one queue message per event and endpoint (never the URL), one
attempt per message, the next attempt queued before the current one completes, the schedule's
end, 410 Gone, an endpoint no longer configured — and send.completed queued when a send ends."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sendmail import services
from sendmail.feedback.webhooks.config import WebhookConfig
from sendmail.feedback.webhooks.delivery import Attempt
from sendmail.feedback.webhooks.events import send_event
from sendmail.feedback.webhooks.outbox import (
    QUEUE_NAME,
    MemoryWebhookQueue,
    Pending,
    StorageWebhookQueue,
    deliver,
    emit,
)
from sendmail.feedback.webhooks.schedule import MAX_ATTEMPTS
from sendmail.feedback.webhooks.signing import new_secret
from sendmail.platform.settings import Settings, get_settings
from sendmail.sending.sends import SendRecord

URL = "https://hook-user:hook-pass@hooks.example.com/sendmail?token=abc"
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def config(**overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {
        "SENDMAIL_WEBHOOK_URLS": f"{URL},https://other.example.net/in",
        "SENDMAIL_WEBHOOK_SECRET": new_secret(),
        **overrides,
    }
    return WebhookConfig.from_settings(Settings(**values))


def completed(send_id: str = "s1") -> Any:
    return send_event("send.completed", send_id=send_id, timestamp=NOW, state="completed")


class Answers:
    """A sender whose attempts answer as the test says, recording what was attempted."""

    def __init__(self, *answers: Attempt) -> None:
        self.answers = list(answers)
        self.made: list[tuple[str, str, bytes]] = []

    def attempt(self, endpoint: Any, msg_id: str, body: bytes) -> Attempt:
        self.made.append((endpoint.fingerprint, msg_id, body))
        return self.answers.pop(0)


def test_an_event_is_one_message_per_endpoint_naming_it_by_fingerprint_only() -> None:
    settings = config()
    queue = MemoryWebhookQueue()
    event = completed()

    assert emit(settings, queue, event) == 2

    messages = [Pending.model_validate_json(m) for m, _ in queue.messages]
    assert {m.endpoint for m in messages} == {e.fingerprint for e in settings.endpoints}
    assert {(m.id, m.type, m.body, m.attempt) for m in messages} == {
        (event.id, "send.completed", event.body().decode(), 1)
    }
    assert [delay for _, delay in queue.messages] == [0, 0]
    text = json.dumps([m for m, _ in queue.messages])
    assert "hook-pass" not in text
    assert "hooks.example.com" not in text


def test_nothing_is_queued_without_endpoints_or_for_a_type_not_wanted() -> None:
    queue = MemoryWebhookQueue()

    assert emit(WebhookConfig.from_settings(Settings()), queue, completed()) == 0
    assert emit(config(SENDMAIL_WEBHOOK_EVENTS="email.bounced"), queue, completed()) == 0
    assert queue.messages == []


def queued(settings: WebhookConfig, attempt: int = 1) -> str:
    event = completed()
    return Pending(
        id=event.id,
        type=event.type,
        body=event.body().decode(),
        endpoint=settings.endpoints[0].fingerprint,
        attempt=attempt,
    ).model_dump_json()


def test_a_delivered_event_is_done() -> None:
    settings = config()
    queue = MemoryWebhookQueue()
    sender = Answers(Attempt("delivered", "HTTP 204", status=204))

    assert deliver(settings, sender, queue, queued(settings)) == "delivered"  # type: ignore[arg-type]

    assert queue.messages == []
    [(fingerprint, msg_id, body)] = sender.made
    assert (fingerprint, msg_id) == (settings.endpoints[0].fingerprint, completed().id)
    assert body == completed().body()


def test_a_failed_attempt_queues_the_next_with_the_same_id_before_it_completes() -> None:
    settings = config()
    queue = MemoryWebhookQueue()
    sender = Answers(Attempt("retry", "HTTP 503", status=503))

    outcome = deliver(settings, sender, queue, queued(settings))  # type: ignore[arg-type]

    assert outcome == "retrying"
    [(message, delay)] = queue.messages
    following = Pending.model_validate_json(message)
    assert (following.id, following.attempt) == (completed().id, 2)
    assert 5 <= delay <= 5.5  # the schedule's second step, jittered by at most 10%


def test_a_retry_after_longer_than_the_schedule_is_honoured() -> None:
    settings = config()
    queue = MemoryWebhookQueue()
    sender = Answers(Attempt("retry", "HTTP 429", status=429, retry_after=120))

    deliver(settings, sender, queue, queued(settings))  # type: ignore[arg-type]

    assert queue.messages[0][1] == 120


def test_after_the_last_attempt_the_event_is_given_up_for_that_endpoint() -> None:
    settings = config()
    queue = MemoryWebhookQueue()
    sender = Answers(Attempt("retry", "timed out"))

    outcome = deliver(settings, sender, queue, queued(settings, MAX_ATTEMPTS))  # type: ignore[arg-type]

    assert outcome == "given_up"
    assert queue.messages == []


@pytest.mark.parametrize(("result", "outcome"), [("gone", "gone"), ("refused", "refused")])
def test_410_or_a_refused_address_stops_that_endpoint_and_event(result: Any, outcome: str) -> None:
    settings = config()
    queue = MemoryWebhookQueue()

    got = deliver(settings, Answers(Attempt(result, "x")), queue, queued(settings))  # type: ignore[arg-type]

    assert got == outcome
    assert queue.messages == []


def test_a_message_for_an_endpoint_no_longer_configured_is_dropped_unsent() -> None:
    old = config()
    now = config(SENDMAIL_WEBHOOK_URLS="https://new.example.org/hook")
    sender = Answers()

    assert deliver(now, sender, MemoryWebhookQueue(), queued(old)) == "dropped"  # type: ignore[arg-type]
    assert sender.made == []


def test_the_next_attempt_that_cannot_be_queued_raises_so_the_host_retries_the_message() -> None:
    class Down:
        def put(self, message: str, delay_seconds: float) -> None:
            raise OSError("storage down")

    settings = config()
    with pytest.raises(OSError, match="storage down"):
        deliver(settings, Answers(Attempt("retry", "HTTP 500")), Down(), queued(settings))  # type: ignore[arg-type]


def test_a_finished_send_queues_send_completed_with_its_metadata_and_counts(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDMAIL_WEBHOOK_URLS", "https://hooks.example.com/in")
    monkeypatch.setenv("SENDMAIL_WEBHOOK_SECRET", new_secret())
    get_settings.cache_clear()
    queue = MemoryWebhookQueue()
    services.override(webhook_queue=queue)
    services.sends().create(
        SendRecord(
            id="s1",
            kind="ses",
            total=3,
            lanes=1,
            batch_size=500,
            list_ref="s1",
            created=NOW,
            metadata={"campaign": "dec"},
        )
    )

    app_functions["finish_send"].get_user_function()({"id": "s1", "sent": 2, "failed": 1})
    app_functions["finish_send"].get_user_function()({"id": "s1", "sent": 2, "failed": 1})

    first, again = (Pending.model_validate_json(m) for m, _ in queue.messages)
    assert first.id == again.id  # a re-run of the step: the same event, receivers de-duplicate
    body = json.loads(first.body)
    assert body["type"] == "send.completed"
    assert body["data"] == {
        "sendId": "s1",
        "metadata": {"campaign": "dec"},
        "state": "completed",
        "counts": {"total": 3, "sent": 2, "failed": 1, "canceled": 0},
    }


def test_a_canceled_send_queues_send_canceled_with_its_final_counts(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDMAIL_WEBHOOK_URLS", "https://hooks.example.com/in")
    monkeypatch.setenv("SENDMAIL_WEBHOOK_SECRET", new_secret())
    get_settings.cache_clear()
    queue = MemoryWebhookQueue()
    services.override(webhook_queue=queue)
    record = SendRecord(
        id="s2", kind="ses", total=5, lanes=1, batch_size=500, list_ref="s2", created=NOW
    )
    services.sends().create(replace(record, control="canceled", control_seq=1))

    app_functions["finish_send"].get_user_function()(
        {"id": "s2", "sent": 2, "failed": 0, "canceled": 3}
    )

    [(message, _)] = queue.messages
    body = json.loads(Pending.model_validate_json(message).body)
    assert (body["type"], body["data"]["state"]) == ("send.canceled", "canceled")
    assert body["data"]["counts"] == {"total": 5, "sent": 2, "failed": 0, "canceled": 3}
    stored = services.sends().get("s2")
    assert stored is not None
    assert (stored.sent, stored.failed, stored.canceled) == (2, 0, 3)


def test_the_storage_queue_holds_base64_messages_invisible_for_their_delay(
    azurite_all: Any,
) -> None:
    azurite = azurite_all
    from azure.storage.queue import QueueClient

    env = {"AzureWebJobsStorage": azurite.connection_string}
    from sendmail.feedback.webhooks.outbox import queue_from_environment

    queue = queue_from_environment(env)
    assert isinstance(queue, StorageWebhookQueue)
    queue.put('{"now": true}', 0)
    queue.put('{"later": true}', 60)

    raw = QueueClient.from_connection_string(azurite.connection_string, QUEUE_NAME)
    visible = [m.content for m in raw.receive_messages(max_messages=10)]
    assert [base64.b64decode(text).decode() for text in visible] == ['{"now": true}']
    assert raw.get_queue_properties().approximate_message_count == 2
    raw.clear_messages()


def ses_event(kind: Any, recipient: str, send_id: str | None = "s1", **fields: Any) -> Any:
    from sendmail.feedback.ses_events import RecipientEvent

    return RecipientEvent(
        type=kind,
        recipient=recipient,
        timestamp=NOW,
        message_id="010c-m1",
        send_id=send_id,
        **fields,
    )


def test_ses_events_become_email_webhooks_with_the_sends_metadata() -> None:
    from sendmail.feedback.webhooks.outbox import emit_recipient_events

    settings = config(
        SENDMAIL_WEBHOOK_URLS="https://hooks.example.com/in",
        SENDMAIL_WEBHOOK_EVENTS="email.delivered,email.bounced,email.complained",
    )
    queue = MemoryWebhookQueue()
    reads: list[str] = []

    def metadata_of(send_id: str) -> dict[str, str]:
        reads.append(send_id)
        return {"campaign": "dec"}

    queued = emit_recipient_events(
        settings,
        queue,
        [
            ses_event("Delivery", "a@example.com"),
            ses_event("Bounce", "b@example.com", sub_type="General"),
            ses_event("Reject", "c@example.com"),  # no webhook type
            ses_event("Complaint", "d@example.com", send_id=None),  # names no send
        ],
        metadata_of,
    )

    assert queued == 2
    bodies = [json.loads(Pending.model_validate_json(m).body) for m, _ in queue.messages]
    assert [b["type"] for b in bodies] == ["email.delivered", "email.bounced"]
    assert bodies[1]["data"] == {
        "sendId": "s1",
        "metadata": {"campaign": "dec"},
        "recipient": "b@example.com",
        "messageId": "010c-m1",
        "sesType": "Bounce",
        "sesSubType": "General",
    }
    assert reads == ["s1"]  # read once per send


def test_email_delivered_is_opt_in() -> None:
    from sendmail.feedback.webhooks.outbox import emit_recipient_events

    queue = MemoryWebhookQueue()
    events = [ses_event("Delivery", "a@example.com")]

    assert emit_recipient_events(config(), queue, events, lambda _: None) == 0


def test_an_unsubscribe_queues_email_unsubscribed_once(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sendmail.sending.unsubscribe import UnsubscribeTokens, new_key

    key = new_key()
    monkeypatch.setenv("SENDMAIL_UNSUBSCRIBE_KEYS", key)
    monkeypatch.setenv("SENDMAIL_WEBHOOK_URLS", "https://hooks.example.com/in")
    monkeypatch.setenv("SENDMAIL_WEBHOOK_SECRET", new_secret())
    get_settings.cache_clear()
    queue = MemoryWebhookQueue()
    services.override(webhook_queue=queue)
    token = UnsubscribeTokens(key).make("s1", "kim@example.com")

    def click() -> int:
        from tests.support.http import call

        answer = call(
            app_functions,
            "unsubscribe",
            f"/api/v1/unsubscribe/{token}",
            method="POST",
            body=b"List-Unsubscribe=One-Click",
            route_params={"token": token},
        )
        return int(answer.status_code)

    assert (click(), click()) == (200, 200)

    [(message, _)] = queue.messages
    body = json.loads(Pending.model_validate_json(message).body)
    assert body["type"] == "email.unsubscribed"
    assert body["data"] == {"sendId": "s1", "metadata": {}, "recipient": "kim@example.com"}


def test_the_trigger_runs_attempts_on_its_own_threads_never_the_workers_pool(
    app_functions: dict[str, Any],
) -> None:
    """A dead endpoint holds an attempt for up to 20 s: on the Python worker's thread pool (the
    batch activities') or the event loop's default one (the routes'), a queue batch of them
    would starve sending. The function is async; its attempts run on its own small pool."""
    import asyncio
    import threading

    import azure.functions as func

    settings = config()
    seen: list[str] = []

    class Recording:
        def attempt(self, endpoint: Any, msg_id: str, body: bytes) -> Attempt:
            seen.append(threading.current_thread().name)
            return Attempt("delivered", "HTTP 204", status=204)

    services.override(
        webhooks=settings, webhook_sender=Recording(), webhook_queue=MemoryWebhookQueue()
    )
    function = app_functions["deliver_webhook"].get_user_function()
    message = func.QueueMessage(body=queued(settings).encode())

    assert asyncio.iscoroutinefunction(function)
    asyncio.run(function(message))

    [name] = seen
    assert name.startswith("webhook")
