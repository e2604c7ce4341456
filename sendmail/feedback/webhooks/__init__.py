"""Signed webhooks (Standard Webhooks): what an event says, how it is signed, where it may go,
how one attempt is made and when the next one is.

Rooms, each with its contract in its docstring:

- :mod:`.events` — the event model, its body and its stable id (``webhook-id``);
- :mod:`.signing` — the secrets and the ``webhook-*`` headers of one attempt;
- :mod:`.endpoints` — endpoint URLs and the addresses they may reach (SSRF rules);
- :mod:`.delivery` — one attempt: resolve once, connect to the checked address, TLS for the
  host name, post, read a bounded answer, judge it (delivered, gone, retry, refused);
- :mod:`.schedule` — the delay before each attempt, a pure function;
- :mod:`.config` — the ``SENDMAIL_WEBHOOK_*`` settings, checked.

Guaranteed here: an attempt never connects anywhere its rules refuse, never follows a
redirect, never waits past its deadlines or reads past its budget, never raises for what the
network or the receiver does, and never logs a body, secret, signature or URL path; an event
keeps its id across attempts and re-emits, and every attempt is signed afresh. Not here: the
queue that holds events between attempts and survives restarts, and which events are emitted
where — the functions around this package do that, and at-least-once delivery is theirs to keep
(enqueue the next attempt before completing the current message).
"""

from __future__ import annotations

from sendmail.feedback.webhooks.config import WebhookConfig
from sendmail.feedback.webhooks.delivery import Attempt, DeliveryLimits, WebhookSender
from sendmail.feedback.webhooks.endpoints import (
    Endpoint,
    EndpointRefused,
    address_refusal,
    parse_endpoint,
    system_resolver,
)
from sendmail.feedback.webhooks.events import (
    DEFAULT_EVENT_TYPES,
    EVENT_TYPES,
    EventData,
    EventType,
    SendCounts,
    WebhookEvent,
    email_event,
    event_id,
    send_event,
)
from sendmail.feedback.webhooks.schedule import MAX_ATTEMPTS, RETRY_DELAYS_SECONDS, delay_before
from sendmail.feedback.webhooks.signing import SigningSecrets, new_secret

__all__ = [
    "DEFAULT_EVENT_TYPES",
    "EVENT_TYPES",
    "MAX_ATTEMPTS",
    "RETRY_DELAYS_SECONDS",
    "Attempt",
    "DeliveryLimits",
    "Endpoint",
    "EndpointRefused",
    "EventData",
    "EventType",
    "SendCounts",
    "SigningSecrets",
    "WebhookConfig",
    "WebhookEvent",
    "WebhookSender",
    "address_refusal",
    "delay_before",
    "email_event",
    "event_id",
    "new_secret",
    "parse_endpoint",
    "send_event",
    "system_resolver",
]
