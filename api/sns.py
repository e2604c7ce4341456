"""The endpoint SNS posts SES's events to: ``POST /api/v1/events/ses``.

It is an SNS HTTPS subscription's endpoint. It takes the function key in the query string
(``?code=``, as the subscription URL carries it) *and* verifies every message as AWS documents
(:mod:`sendmail.feedback.sns`): a message that fails a check is refused with 403 and records
nothing. A verified notification's SES events feed the suppression list and the send's event
record (:mod:`sendmail.feedback.intake`); a failure after verification is a 500, and SNS delivers
again (idempotent on the SNS ``MessageId``). Blocking work (certificate fetch, Azure Tables) runs
on a thread, off the event loop.

SNS has no address range of its own to allow, so this is one of the public routes
(``function_app.py``): with the caller IP allow-list on, the public app serves it
(docs/deploy.md, "What stays public"). It needs no Durable client, only the tables.
"""

import asyncio
import logging
import time
from typing import Any

import azure.functions as func

from api.http import json_response, v1_errors

logger = logging.getLogger(__name__)

bp = func.Blueprint()

EVENTS_ROUTE = "v1/events/ses"
#: The one answer to a message that fails any verification rule (the log says which).
SNS_REFUSED = "The message could not be verified."


def _notify(events: list[Any]) -> None:
    """Count SES's events for the account guard (which may trip: api/account.py), then queue
    their webhooks, with each send's metadata (no endpoint: none)."""
    from sendmail import services
    from sendmail.feedback.webhooks.outbox import emit_recipient_events, send_metadata

    _guard(events)
    config = services.webhooks()
    if config.endpoints:
        sends = services.sends()
        emit_recipient_events(
            config, services.webhook_queue(), events, lambda send_id: send_metadata(sends, send_id)
        )
    # Counted last: a failure above makes SNS deliver the notification again (its id is
    # remembered only once this returns), and the events would be counted twice.
    _count(events)


def _send_kept(send_id: str) -> bool:
    """Whether a send is still kept (a record, not being purged): SES's late events about a
    purged send are not stored (sendmail/feedback/intake.py). A record that cannot be read
    counts as kept: storing an event retention may miss is better than losing one."""
    from sendmail import services

    try:
        record = services.sends().get(send_id)
    except Exception:
        return True
    return record is not None and record.purging is None


def _count(events: list[Any]) -> None:
    """``sendmail.sns.events`` by type (SES's names); a bounce says whether it was permanent
    (the kind that suppresses the address, and that SES's own bounce rate counts)."""
    from collections import Counter

    from sendmail.platform import telemetry

    kinds = Counter(
        (e.type, e.suppress == "BOUNCE" if e.type == "Bounce" else None) for e in events
    )
    for (kind, permanent), count in kinds.items():
        telemetry.sns_events(kind, count, permanent)


def _guard(events: list[Any]) -> None:
    """The guard counts deliveries, permanent bounces (those that put the address on the
    suppression list) and complaints; a count it cannot write is logged, never a 500: SNS would
    deliver the notification again and everything else in it was done."""
    from api.account import guard_tripped, pause_bulk
    from sendmail import services
    from sendmail.admission.guard import Counts

    counts = Counts(
        delivered=sum(1 for e in events if e.type == "Delivery"),
        bounced=sum(1 for e in events if e.type == "Bounce" and e.suppress == "BOUNCE"),
        complained=sum(1 for e in events if e.type == "Complaint"),
    )
    try:
        guard = services.guard()
        tripped = guard.observe(counts)
        if tripped is not None:
            guard_tripped(tripped)
        elif _sweep_due() and guard.state().state == "tripped":
            pause_bulk()  # a bulk send admitted just as the guard tripped, on another instance
    except Exception:  # counted or tripped all the same: new bulk sends are refused
        logger.exception(
            "the account guard could not count SES's events or pause every bulk send; the "
            "next events (or GET /api/v1/account) pause the rest"
        )


#: While the guard is tripped, SES's events sweep the unfinished sends for bulk ones it has not
#: paused at most this often per instance (a send admitted on an instance whose view of the
#: guard was still ok, or written after the trip's own sweep).
SWEEP_SECONDS = 60.0
_last_sweep = [float("-inf")]


def _sweep_due() -> bool:
    now = time.monotonic()
    if now - _last_sweep[0] < SWEEP_SECONDS:
        return False
    _last_sweep[0] = now
    return True


@bp.function_name("ses_events")
@bp.route(route=EVENTS_ROUTE, methods=["POST"])
@v1_errors
async def ses_events(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.contract.api_models import EventsReceipt
    from sendmail.contract.errors import Forbidden, ValidationFailed
    from sendmail.feedback.intake import act
    from sendmail.feedback.sns import SnsMalformed, SnsRejected

    verifier = services.sns_verifier()
    message_type = req.headers.get("x-amz-sns-message-type")
    try:
        message = await asyncio.to_thread(
            verifier.verify, req.get_body(), message_type=message_type
        )
        outcome = await asyncio.to_thread(
            act,
            message,
            verifier,
            services.event_store,
            services.suppressions,
            services.processed_sns_messages,
            _notify,
            _send_kept,
        )
    except SnsMalformed as e:
        raise ValidationFailed(str(e)) from e
    except SnsRejected as e:
        # The reason is the operator's (the log), not the caller's: naming the check that
        # failed would let a caller probe the configuration (allowed topics, version).
        logger.warning("SNS message refused: %s", e)
        raise Forbidden(SNS_REFUSED) from e
    body = EventsReceipt.model_validate(outcome.to_json())
    return json_response(body.model_dump(mode="json"))
