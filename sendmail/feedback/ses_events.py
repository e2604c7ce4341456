"""SES event records, as SES publishes them to SNS, read into one event per recipient.

Two forms arrive, both in the ``Message`` of an SNS notification:

- **event publishing** (a configuration set's event destination): ``eventType`` is
  ``Delivery``, ``Bounce``, ``Complaint``, ``Reject``, ``DeliveryDelay`` (kept) or ``Send``,
  ``Open``, ``Click``, ``Rendering Failure``, ``Subscription`` (ignored); ``mail.tags`` carries
  the message tags the sender set — :data:`SEND_ID_TAG` names the send;
- **identity notifications** (the older form): ``notificationType`` is ``Delivery``, ``Bounce``
  or ``Complaint``, with no tags unless SES adds them: such an event still feeds the suppression
  list, but cannot be counted for a send.

Which recipients an event concerns: ``delivery.recipients``, ``bounce.bouncedRecipients``,
``complaint.complainedRecipients``, ``deliveryDelay.delayedRecipients``; a ``Reject`` concerns
every ``mail.destination``.

What suppresses an address (:attr:`RecipientEvent.suppress`): a ``Permanent`` bounce (any
subtype: ``General``, ``NoEmail``, ``Suppressed``, ``OnAccountSuppressionList``), and a complaint
unless its feedback type is ``not-spam`` (the reporter says the message was *not* spam).
Transient and undetermined bounces, delays and rejects (SES refused the content) do not.

Nothing here keeps mail content: an event holds the recipient, the SES message id, its type,
subtype, time and diagnostic text (the remote server's answer), never the subject or headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sendmail.contract.addresses import normalize_address
from sendmail.platform import jsontext

#: The SES message tag (SESv2 ``EmailTags``) that carries the send id on every message.
SEND_ID_TAG = "sendmail-send-id"
#: What SES allows in a tag value (and the send ids this service makes).
SEND_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
#: Diagnostic text kept per event, at most.
MAX_DIAGNOSTIC_CHARS = 1000

EventType = Literal["Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
SuppressionReason = Literal["BOUNCE", "COMPLAINT", "UNSUBSCRIBED"]


@dataclass(frozen=True, slots=True)
class RecipientEvent:
    """What happened to one recipient's message after SES accepted it."""

    type: EventType
    recipient: str
    timestamp: datetime
    message_id: str | None = None
    send_id: str | None = None
    sub_type: str | None = None
    diagnostic: str | None = None
    #: Why this event puts the recipient on the suppression list, if it does.
    suppress: SuppressionReason | None = None


def send_tags(send_id: str) -> dict[str, str]:
    """The message tags that let an event find its send: empty if SES could not carry the id."""
    return {SEND_ID_TAG: send_id} if SEND_ID_PATTERN.match(send_id) else {}


def parse_notification(message: str, published: str | None = None) -> list[RecipientEvent] | None:
    """The recipient events in an SNS notification's ``Message``; None if it is not an SES
    event record at all (an SNS test message, another publisher on the topic). ``published`` is
    the notification's own (signed) ``Timestamp``: the time of a record that has none, so that a
    redelivery is the same event."""
    try:
        record = jsontext.loads(message)
    except jsontext.MalformedJson:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("mail"), dict):
        return None
    kind = record.get("eventType", record.get("notificationType"))
    if not isinstance(kind, str):
        return None
    return parse_record(record, published)


def parse_record(record: Mapping[str, Any], published: str | None = None) -> list[RecipientEvent]:
    """One event per recipient for the kinds kept; [] for the others (Send, Open, Click, ...).

    A message of this service has one destination, the address it checks and reports: an event
    about that message is that address's, whatever address the receiving server named (a bounce
    names the DSN's ``Final-Recipient``, which can be an alias's target).
    """
    kind = record.get("eventType", record.get("notificationType"))
    mail = _object(record.get("mail"))
    message_id = _text(mail.get("messageId"))
    send_id = _send_id(mail.get("tags"))
    sent_at = _time(mail.get("timestamp")) or _time(published) or datetime.now(UTC)
    destination = _strings(mail.get("destination"))

    def events(
        type_: EventType,
        recipients: Sequence[tuple[str, str | None]],
        when: datetime,
        sub_type: str | None,
        suppress: SuppressionReason | None = None,
        diagnostic: str | None = None,
    ) -> list[RecipientEvent]:
        if len(destination) == 1 and len(recipients) == 1:
            ((named, own),) = recipients
            if normalize_address(named) != normalize_address(destination[0]):
                said = own or diagnostic
                recipients = [(destination[0], f"{said} (for {named})" if said else f"for {named}")]
        return [
            RecipientEvent(
                type=type_,
                recipient=address,
                timestamp=when,
                message_id=message_id,
                send_id=send_id,
                sub_type=sub_type,
                diagnostic=_clip(own or diagnostic),
                suppress=suppress,
            )
            for address, own in recipients
        ]

    recipients: list[tuple[str, str | None]]
    if kind == "Delivery":
        delivery = _object(record.get("delivery"))
        recipients = [(a, None) for a in _strings(delivery.get("recipients"))]
        when = _time(delivery.get("timestamp")) or sent_at
        return events("Delivery", recipients, when, None, None, _text(delivery.get("smtpResponse")))
    if kind == "Bounce":
        bounce = _object(record.get("bounce"))
        bounce_type = _text(bounce.get("bounceType")) or "Undetermined"
        bounce_sub = _text(bounce.get("bounceSubType")) or "Undetermined"
        recipients = _addresses(bounce.get("bouncedRecipients"), "diagnosticCode", "status")
        when = _time(bounce.get("timestamp")) or sent_at
        suppress: SuppressionReason | None = "BOUNCE" if bounce_type == "Permanent" else None
        return events("Bounce", recipients, when, f"{bounce_type}/{bounce_sub}", suppress)
    if kind == "Complaint":
        complaint = _object(record.get("complaint"))
        feedback = _text(complaint.get("complaintFeedbackType"))
        sub_type = feedback or _text(complaint.get("complaintSubType"))
        recipients = [(a, None) for a, _ in _addresses(complaint.get("complainedRecipients"))]
        when = _time(complaint.get("timestamp")) or sent_at
        reason: SuppressionReason | None = None if feedback == "not-spam" else "COMPLAINT"
        return events("Complaint", recipients, when, sub_type, reason)
    if kind == "DeliveryDelay":
        delay = _object(record.get("deliveryDelay"))
        recipients = _addresses(delay.get("delayedRecipients"), "diagnosticCode", "status")
        when = _time(delay.get("timestamp")) or sent_at
        return events("DeliveryDelay", recipients, when, _text(delay.get("delayType")))
    if kind == "Reject":
        reject = _object(record.get("reject"))
        recipients = [(a, None) for a in destination]
        return events("Reject", recipients, sent_at, None, None, _text(reject.get("reason")))
    return []


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _addresses(value: Any, *detail: str) -> list[tuple[str, str | None]]:
    """(address, its own diagnostic) for each ``{"emailAddress": ...}`` of a recipient list."""
    out: list[tuple[str, str | None]] = []
    for item in value if isinstance(value, list) else []:
        entry = _object(item)
        address = _text(entry.get("emailAddress"))
        if address is None:
            continue
        own = next((t for name in detail if (t := _text(entry.get(name)))), None)
        out.append((address, own))
    return out


def _send_id(tags: Any) -> str | None:
    values = _object(tags).get(SEND_ID_TAG)
    candidates = _strings(values) if isinstance(values, list) else _strings([values])
    return next((v for v in candidates if SEND_ID_PATTERN.match(v)), None)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_DIAGNOSTIC_CHARS else text[: MAX_DIAGNOSTIC_CHARS - 1] + "…"
