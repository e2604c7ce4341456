"""Between an event and its deliveries: a Storage queue, one message per event and endpoint.

Why a queue of its own, not the sends' task hub: a slow or dead endpoint must never slow sending.
The task hub's work-item queue is what the batch-queue 429 counts, and its activity slots are the
sends'; a Storage queue with a queue trigger (``triggers/webhooks.py``) holds deliveries apart,
with the host's own retry and poison handling for crashes.

- :func:`emit` puts one :class:`Pending` message per configured endpoint that wants the event's
  type on ``sendmail-webhooks`` (in the host's storage account). The message names the endpoint
  by its fingerprint, never its URL (which may carry credentials), and carries the signed body's
  text, so a delivery needs nothing else.
- :func:`deliver` makes one attempt (:class:`~sendmail.feedback.webhooks.delivery.WebhookSender`)
  and then: done when delivered; done when the endpoint answered 410 Gone (for this event and
  endpoint only) or the endpoint's address is refused; otherwise it puts the next attempt on the
  queue, invisible for :func:`~sendmail.feedback.webhooks.schedule.delay_before`'s delay, before
  it returns — so the queue message of this attempt is completed only once the next one is safe:
  at least once, across crashes and restarts, the ``webhook-id`` the same every time. After the
  schedule's last attempt (about 27.6 hours) the event is given up for that endpoint (logged).
- A message whose endpoint is no longer configured is dropped (logged by fingerprint).

Messages are base64-encoded, as the Functions host's queue trigger expects by default
(``messageEncoding``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from sendmail.feedback.ses_events import RecipientEvent
from sendmail.feedback.webhooks.config import WebhookConfig
from sendmail.feedback.webhooks.delivery import Attempt, WebhookSender
from sendmail.feedback.webhooks.events import EventType, WebhookEvent, email_event
from sendmail.feedback.webhooks.schedule import delay_before
from sendmail.platform import telemetry

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from sendmail.sending.sends import SendsTable

logger = logging.getLogger(__name__)

#: The queue deliveries wait in (the host's storage account); the trigger reads it.
QUEUE_NAME = "sendmail-webhooks"

Outcome = Literal["delivered", "gone", "refused", "retrying", "given_up", "dropped"]


class Pending(BaseModel):
    """One queue message: an event on its way to one endpoint."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    type: EventType
    #: The event's body, exactly as signed and posted.
    body: str
    #: The endpoint's fingerprint (:attr:`~sendmail.feedback.webhooks.endpoints.Endpoint.
    #: fingerprint`): never the URL.
    endpoint: str
    #: This message's attempt (1-based).
    attempt: int = Field(default=1, ge=1)


class WebhookQueue(Protocol):
    def put(self, message: str, delay_seconds: float) -> None:
        """Queue ``message``, invisible for ``delay_seconds``."""
        ...


@dataclass
class MemoryWebhookQueue:
    """In-process queue (tests): what was put, with its delay."""

    messages: list[tuple[str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, message: str, delay_seconds: float) -> None:
        with self._lock:
            self.messages.append((message, delay_seconds))


class StorageWebhookQueue:
    """The queue in Azure Storage (or Azurite), created on first use."""

    def __init__(self, client: QueueClient) -> None:
        from sendmail.platform.storage import CreatedOnce

        self._client = client
        self._created = CreatedOnce(client.create_queue, f"queue {client.queue_name}")

    def put(self, message: str, delay_seconds: float) -> None:
        """Sent at once; the queue is created only when it is missing (locally: in Azure the
        Bicep declares it, and the public app's identity may send to it but not create it)."""
        from azure.core.exceptions import ResourceNotFoundError

        # Storage caps a message's invisibility at 7 days; the schedule never asks for more.
        delay = round(delay_seconds)
        try:
            self._client.send_message(message, visibility_timeout=delay)
        except ResourceNotFoundError:
            self._created.ensure()
            self._client.send_message(message, visibility_timeout=delay)


def queue_from_environment(env: Mapping[str, str] = os.environ) -> StorageWebhookQueue:
    """The webhook queue in the host's storage; base64 messages, as the trigger expects."""
    from azure.storage.queue import TextBase64EncodePolicy

    from sendmail.platform.storage import queue_client

    return StorageWebhookQueue(
        queue_client(QUEUE_NAME, env, message_encode_policy=TextBase64EncodePolicy())
    )


def send_metadata(sends: SendsTable, send_id: str) -> dict[str, str] | None:
    """The caller's ``metadata`` of a send, for its webhooks (None: none, or no record)."""
    record = sends.get(send_id)
    return dict(record.metadata) if record is not None and record.metadata else None


def emit(config: WebhookConfig, queue: WebhookQueue, event: WebhookEvent) -> int:
    """Queue ``event`` for every endpoint (none when its type is not wanted); how many.
    Storage errors are raised: the caller decides whether its step is retried."""
    if not config.wants(event.type):
        return 0
    body = event.body().decode("utf-8")
    for endpoint in config.endpoints:
        pending = Pending(id=event.id, type=event.type, body=body, endpoint=endpoint.fingerprint)
        queue.put(pending.model_dump_json(), 0)
    return len(config.endpoints)


#: SES event type -> webhook type (Reject and DeliveryDelay have none).
_EMAIL_TYPES: dict[str, EventType] = {
    "Delivery": "email.delivered",
    "Bounce": "email.bounced",
    "Complaint": "email.complained",
}


def emit_recipient_events(
    config: WebhookConfig,
    queue: WebhookQueue,
    events: Sequence[RecipientEvent],
    metadata_of: Callable[[str], Mapping[str, str] | None],
) -> int:
    """Queue the ``email.*`` webhooks of SES's events (those that name a send); how many
    messages. ``metadata_of(send id)`` is read once per send."""
    metadata: dict[str, Mapping[str, str] | None] = {}
    queued = 0
    for found in events:
        kind = _EMAIL_TYPES.get(found.type)
        if kind is None or found.send_id is None or not config.wants(kind):
            continue
        if found.send_id not in metadata:
            metadata[found.send_id] = metadata_of(found.send_id)
        given = metadata[found.send_id]
        event = email_event(
            kind,
            send_id=found.send_id,
            timestamp=found.timestamp,
            recipient=found.recipient,
            message_id=found.message_id,
            ses_type=found.type,
            ses_sub_type=found.sub_type,
            metadata=dict(given) if given else None,
            # a message can bounce softly more than once: each is its own event
            occurrence=found.timestamp.isoformat(),
        )
        queued += emit(config, queue, event)
    return queued


#: Called with each attempt made (devhost shows them at /_dev/webhooks); errors are ignored.
AttemptListener = Callable[[Pending, str, Attempt], None]
_listeners: list[AttemptListener] = []


def add_attempt_listener(listener: AttemptListener) -> None:
    _listeners.append(listener)


def deliver(
    config: WebhookConfig, sender: WebhookSender, queue: WebhookQueue, message: str
) -> Outcome:
    """One attempt of a queued delivery, and the next one queued when it must be retried (see
    the module docs). Raises only when the next attempt could not be queued (the host then
    retries this message). Each attempt is counted (``sendmail.webhooks.deliveries``)."""
    pending = Pending.model_validate_json(message)
    outcome = _deliver(config, sender, queue, pending)
    telemetry.webhook_delivery(pending.type, METRIC_OUTCOMES[outcome])
    return outcome


#: Each outcome as the metric names it: ``poisoned`` is a delivery given up for good after its
#: whole retry schedule (the alert on poison deliveries reads it).
METRIC_OUTCOMES: dict[Outcome, str] = {
    "delivered": "delivered",
    "retrying": "retried",
    "given_up": "poisoned",
    "gone": "gone",
    "refused": "refused",
    "dropped": "dropped",
}


def _deliver(
    config: WebhookConfig, sender: WebhookSender, queue: WebhookQueue, pending: Pending
) -> Outcome:
    endpoint = config.endpoint(pending.endpoint)
    if endpoint is None:
        logger.warning(
            "webhook %s: endpoint #%s is no longer configured", pending.id, pending.endpoint
        )
        return "dropped"
    attempt = sender.attempt(endpoint, pending.id, pending.body.encode("utf-8"))
    for listener in list(_listeners):
        try:
            listener(pending, endpoint.label, attempt)
        except Exception:  # a viewer must never break a delivery
            logger.debug("webhook attempt listener failed", exc_info=True)
    if attempt.result == "delivered":
        return "delivered"
    if attempt.final:
        logger.warning(
            "webhook %s (%s) to %s: %s, not retried",
            pending.id,
            pending.type,
            endpoint.label,
            attempt.reason,
        )
        return "gone" if attempt.result == "gone" else "refused"
    following = pending.attempt + 1
    delay = delay_before(
        following, key=f"{pending.id}:{pending.endpoint}", retry_after=attempt.retry_after
    )
    if delay is None:
        logger.error(
            "webhook %s (%s) to %s: given up after %d attempts (%s)",
            pending.id,
            pending.type,
            endpoint.label,
            pending.attempt,
            attempt.reason,
        )
        return "given_up"
    queue.put(pending.model_copy(update={"attempt": following}).model_dump_json(), delay)
    logger.info(
        "webhook %s (%s) to %s: %s; attempt %d in %.0f s",
        pending.id,
        pending.type,
        endpoint.label,
        attempt.reason,
        following,
        delay,
    )
    return "retrying"
