"""What a webhook says: one event, its body, and the id it keeps across retries and re-emits.

A body follows the Standard Webhooks payload shape — ``type``, ``timestamp`` (when the event
happened, not when it is delivered), ``data`` — as compact UTF-8 JSON with camelCase keys::

    {"type": "email.bounced", "timestamp": "2026-03-01T09:30:12.345Z",
     "data": {"sendId": "0f1c…", "metadata": {"campaign": "spring"},
              "recipient": "a@example.com", "messageId": "0100018e…",
              "sesType": "Bounce", "sesSubType": "Permanent/General"}}

The types (:data:`EVENT_TYPES`) and what ``data`` holds besides ``sendId`` and ``metadata`` (the
send's own, as the caller gave it):

- ``send.completed`` — the send finished: ``state`` and ``counts`` (total, sent, failed,
  canceled);
- ``send.canceled`` — the send was canceled: ``state``, and ``counts`` once it has stopped;
- ``send.paused``, ``send.resumed`` — ``state``;
- ``email.delivered``, ``email.bounced``, ``email.complained`` — one recipient's message, as SES
  reported it: ``recipient``, ``messageId``, ``sesType`` (``Delivery``, ``Bounce``,
  ``Complaint``) and ``sesSubType`` (a bounce's ``Permanent/General``, a complaint's feedback
  type), when SES gave one;
- ``email.unsubscribed`` — a recipient used the one-click unsubscribe: ``recipient``, and
  ``messageId`` when known;
- ``account.guard_tripped`` — the account guard stopped bulk sending (sendmail/admission/
  guard.py): ``reason``, and ``pausedSends`` (how many running sends it paused). No ``sendId``.

**The id** (``webhook-id``, ``msg_`` and 26 base32 characters) is a hash of what identifies the
event — its type, send id, message id, recipient and an ``occurrence`` the emitter gives for
events that can happen more than once with the same identity (the second pause of a send, a
second transient bounce: the pause's sequence number, SES's feedback id) — never a random or
clock value. An event emitted again (an activity run twice, a crash between emitting and
recording that it was emitted) has the id it had, so receivers that deduplicate on
``webhook-id``, as the spec asks, see it once; every retry of a delivery keeps it too. The id
holds no address in the clear (it is logged; the body, which names the recipient, never is).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from sendmail.platform.settings import DEFAULT_WEBHOOK_EVENTS, WebhookEventType

EventType = WebhookEventType
EVENT_TYPES: tuple[EventType, ...] = get_args(WebhookEventType)
DEFAULT_EVENT_TYPES: tuple[EventType, ...] = DEFAULT_WEBHOOK_EVENTS
#: Types whose ``data`` is about one recipient's message.
EMAIL_EVENT_TYPES = frozenset(t for t in EVENT_TYPES if t.startswith("email."))
#: Types about the account, not one send.
ACCOUNT_EVENT_TYPES = frozenset(t for t in EVENT_TYPES if t.startswith("account."))
ID_PREFIX = "msg_"


class SendCounts(BaseModel):
    """A send's recipients by outcome (``sent + failed + canceled == total`` once it ended)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: int = Field(ge=0)
    sent: int = Field(ge=0)
    failed: int = Field(ge=0)
    canceled: int = Field(default=0, ge=0)


class EventData(BaseModel):
    """The ``data`` of an event (see the module docs for which fields each type carries)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    send_id: str | None = Field(default=None, min_length=1)
    metadata: dict[str, str] | None = None
    state: str | None = None
    counts: SendCounts | None = None
    recipient: str | None = None
    message_id: str | None = None
    ses_type: str | None = None
    ses_sub_type: str | None = None
    reason: str | None = None
    paused_sends: int | None = Field(default=None, ge=0)


class WebhookEvent(BaseModel):
    """One event: the body's three fields, and the id that goes in ``webhook-id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(exclude=True, pattern=r"^msg_[a-z2-7]{26}$")
    type: EventType
    timestamp: datetime
    data: EventData

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("an event's timestamp needs a time zone")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _data_fits_type(self) -> WebhookEvent:
        if self.type in EMAIL_EVENT_TYPES and self.data.recipient is None:
            raise ValueError(f"{self.type} events need a recipient")
        if self.type not in EMAIL_EVENT_TYPES and self.data.recipient is not None:
            raise ValueError(f"{self.type} events take no recipient")
        if (self.type in ACCOUNT_EVENT_TYPES) != (self.data.send_id is None):
            raise ValueError(
                f"{self.type} events {'take no' if self.data.send_id else 'need a'} send id"
            )
        return self

    def body(self) -> bytes:
        """The bytes posted and signed: compact JSON, UTF-8, fields left out when unknown."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


def event_id(
    type: EventType,
    send_id: str,
    *,
    message_id: str | None = None,
    recipient: str | None = None,
    occurrence: str = "",
) -> str:
    """The event's ``webhook-id``: the same for the same identity, whenever it is computed."""
    identity = json.dumps([type, send_id, message_id or "", recipient or "", occurrence])
    digest = hashlib.sha256(identity.encode("utf-8")).digest()[:16]
    return ID_PREFIX + base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def send_event(
    type: EventType,
    *,
    send_id: str,
    timestamp: datetime,
    state: str,
    metadata: dict[str, str] | None = None,
    counts: SendCounts | None = None,
    occurrence: str = "",
) -> WebhookEvent:
    """A ``send.*`` event. ``occurrence`` tells apart events of one type and send that happen
    more than once (each pause of a send: its sequence number)."""
    return WebhookEvent(
        id=event_id(type, send_id, occurrence=occurrence),
        type=type,
        timestamp=timestamp,
        data=EventData(send_id=send_id, metadata=metadata or {}, state=state, counts=counts),
    )


def guard_event(*, timestamp: datetime, reason: str, paused_sends: int) -> WebhookEvent:
    """``account.guard_tripped``: its id is the moment it tripped (each trip is its own)."""
    return WebhookEvent(
        id=event_id("account.guard_tripped", "", occurrence=timestamp.isoformat()),
        type="account.guard_tripped",
        timestamp=timestamp,
        data=EventData(reason=reason, paused_sends=paused_sends),
    )


def email_event(
    type: EventType,
    *,
    send_id: str,
    timestamp: datetime,
    recipient: str,
    message_id: str | None = None,
    ses_type: str | None = None,
    ses_sub_type: str | None = None,
    metadata: dict[str, str] | None = None,
    occurrence: str = "",
) -> WebhookEvent:
    """An ``email.*`` event about ``recipient``'s message. ``occurrence``: SES's feedback id
    where one message can have several events of a type (transient bounces)."""
    return WebhookEvent(
        id=event_id(
            type, send_id, message_id=message_id, recipient=recipient, occurrence=occurrence
        ),
        type=type,
        timestamp=timestamp,
        data=EventData(
            send_id=send_id,
            metadata=metadata or {},
            recipient=recipient,
            message_id=message_id,
            ses_type=ses_type,
            ses_sub_type=ses_sub_type,
        ),
    )
