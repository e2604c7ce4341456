"""What happens to an SNS message posted to the events route, once it is verified.

:func:`handle` is the whole path, with no I/O of its own — the verifier, the event store and the
suppression list come in as arguments:

1. :meth:`SnsVerifier.verify` (:mod:`sendmail.feedback.sns`): a message that fails any check raises
   before anything below runs, so a refused message records nothing.
2. ``SubscriptionConfirmation``: confirmed by fetching its ``SubscribeURL`` (same host rule as
   the certificate), and logged. ``UnsubscribeConfirmation``: logged only — re-subscribing is
   an operator's decision.
3. ``Notification``: its ``Message`` read as an SES event record
(:mod:`sendmail.feedback.ses_events`);
   a message that is not one (an SNS test message, another publisher) is acknowledged and
   logged. A notification whose ``MessageId`` was acted on before is a replay
   (:mod:`sendmail.feedback.replays`): acknowledged, nothing done. Otherwise, in this order, each
   idempotent so SNS's redelivery after a failure is safe: the addresses the events suppress go
   on the suppression list (first, because that is what protects the account), the events that
   name a send are stored with their counts, and the ``MessageId`` is recorded.

Anything that fails after verification raises (the route answers 500 and SNS delivers again).
Logs carry the SNS message id, the topic and counts — never addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from sendmail.feedback.event_store import EventStore
from sendmail.feedback.replays import ProcessedMessages
from sendmail.feedback.ses_events import RecipientEvent, parse_notification
from sendmail.feedback.sns import NOTIFICATION, SUBSCRIPTION_CONFIRMATION, SnsMessage, SnsVerifier
from sendmail.feedback.suppression import Suppression, SuppressionList

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one SNS message did (the events route's answer)."""

    type: str
    #: Recipient events stored now / already stored by an earlier delivery of the message.
    recorded: int = 0
    duplicates: int = 0
    #: Addresses put on the suppression list now.
    suppressed: int = 0
    #: Events that name no send (no send-id tag): they count for no send.
    unattributed: int = 0
    #: The message was not an SES event record, or of a kind not kept (Send, Open, ...).
    ignored: bool = False
    #: The notification was acted on before (its ``MessageId`` is recorded): nothing done.
    replayed: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "unattributed": self.unattributed,
            "ignored": self.ignored,
            "replayed": self.replayed,
        }


def handle(
    body: bytes,
    verifier: SnsVerifier,
    events: EventStore,
    suppressions: SuppressionList,
    processed: ProcessedMessages,
    *,
    message_type: str | None = None,
) -> Outcome:
    """Verify ``body`` and act on it (see the module docs)."""
    message = verifier.verify(body, message_type=message_type)
    return act(message, verifier, lambda: events, lambda: suppressions, lambda: processed)


def _kept(
    events: list[RecipientEvent], send_exists: Callable[[str], bool] | None
) -> list[RecipientEvent]:
    """The events to store: those of a send gone lose their send id (the store keeps none
    without one), in place, so every event keeps its index (its row key)."""
    if send_exists is None:
        return events
    known: dict[str, bool] = {}
    kept = []
    for event in events:
        send_id = event.send_id
        if send_id is not None and send_id not in known:
            known[send_id] = send_exists(send_id)
            if not known[send_id]:
                logger.info("SES events for send %s, which is no longer kept: not stored", send_id)
        gone = send_id is not None and not known[send_id]
        kept.append(replace(event, send_id=None) if gone else event)
    return kept


def act(
    message: SnsMessage,
    verifier: SnsVerifier,
    events: Callable[[], EventStore],
    suppressions: Callable[[], SuppressionList],
    processed: Callable[[], ProcessedMessages],
    notify: Callable[[list[RecipientEvent]], object] | None = None,
    send_exists: Callable[[str], bool] | None = None,
) -> Outcome:
    """Act on a verified message. The stores are asked for only when a notification needs them
    (a subscription confirmation works before storage is configured). ``send_exists(id)``
    says whether a send is still kept: an event that comes after its send was purged (or while
    it is being purged) is not stored — retention would never find it again, and it names a
    recipient — though its suppression and its webhook go ahead."""
    if message.type == SUBSCRIPTION_CONFIRMATION:
        verifier.confirm(message)
        logger.warning("SNS subscription to %s confirmed", message.topic_arn)
        return Outcome(message.type)
    if message.type != NOTIFICATION:
        logger.warning(
            "SNS %s from %s: logged only (subscribe again to receive events)",
            message.type,
            message.topic_arn,
        )
        return Outcome(message.type)
    parsed = parse_notification(message.message, message.timestamp)
    if not parsed:
        logger.info(
            "SNS notification %s from %s is not a kept SES event: acknowledged",
            message.message_id,
            message.topic_arn,
        )
        return Outcome(message.type, ignored=True)
    if processed().seen(message.message_id, message.timestamp):
        logger.warning(
            "SNS notification %s from %s was acted on before: a replay, nothing done",
            message.message_id,
            message.topic_arn,
        )
        return Outcome(message.type, replayed=True)
    suppressed = 0
    for event in parsed:
        entry = Suppression.from_event(event)
        if entry is not None and suppressions().add(entry):
            suppressed += 1
    stored = events().record(message.message_id, _kept(parsed, send_exists))
    if notify is not None:
        notify(parsed)
    processed().remember(message.message_id, message.timestamp)  # last: all of it is done
    unattributed = sum(1 for event in parsed if event.send_id is None)
    # One line per notification, queryable per send (docs/deploy.md has the query).
    logger.info(
        "SES %s events for send %s: %d recorded, %d duplicate, %d suppressed (SNS %s)",
        parsed[0].type,
        next((e.send_id for e in parsed if e.send_id), "none"),
        stored.recorded,
        stored.duplicates,
        suppressed,
        message.message_id,
    )
    return Outcome(
        message.type,
        recorded=stored.recorded,
        duplicates=stored.duplicates,
        suppressed=suppressed,
        unattributed=unattributed,
    )
