"""After sending: the endpoint SNS posts SES's events to, and a send's events.

``POST /api/v1/events/ses`` is an SNS HTTPS subscription's endpoint. It takes the function key
in the query string (``?code=``, as the subscription URL carries it) *and* verifies every message
as AWS documents (:mod:`sendmail.feedback.sns`): a message that fails a check is refused with 403
and records nothing. A verified notification's SES events feed the suppression list and the send's
event record (:mod:`sendmail.feedback.intake`); a failure after verification is a 500, and SNS
delivers again (idempotent on the SNS ``MessageId``).

``GET /api/v1/emails/{id}/events`` lists a send's events per recipient, oldest first, a page at a
time. Blocking work (certificate fetch, Azure Tables) runs on a thread, off the event loop.
"""

import asyncio
import logging
import re

import azure.durable_functions as df
import azure.functions as func

from api.http import json_response, page_limit, v1_errors

logger = logging.getLogger(__name__)

bp = df.Blueprint()

EVENTS_ROUTE = "v1/events/ses"
SEND_EVENTS_ROUTE = "v1/emails/{id}/events"
#: Events per page: the default, and the most a caller may ask for.
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: The one answer to a message that fails any verification rule (the log says which).
SNS_REFUSED = "The message could not be verified."
_SEND_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


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


@bp.function_name("email_events")
@bp.route(route=SEND_EVENTS_ROUTE, methods=["GET"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_events(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from api.emails import read_status
    from orchestrators.names import KIND_BY_ORCHESTRATOR
    from sendmail import services
    from sendmail.contract.api_models import SendEvents
    from sendmail.contract.errors import NotFound, ValidationFailed
    from sendmail.feedback.ses_events import EVENT_TYPES

    instance_id = req.route_params.get("id", "")
    cursor = req.params.get("cursor") or None
    type_text = req.params.get("type") or None
    problems: list[str] = []
    limit = page_limit(req, DEFAULT_PAGE, MAX_PAGE, problems)
    event_type = next((t for t in EVENT_TYPES if t == type_text), None)
    if type_text is not None and event_type is None:
        problems.append(f"type must be one of {', '.join(EVENT_TYPES)}")
    if problems:
        raise ValidationFailed(problems)
    status = await read_status(client, instance_id) if _SEND_ID.match(instance_id) else None
    kind = KIND_BY_ORCHESTRATOR.get(status.name or "") if status is not None else None
    if status is None or status.runtime_status is None or kind is None:
        raise NotFound(f"No send with id {instance_id!r} exists.")
    store = services.event_store()
    try:
        page = await asyncio.to_thread(
            store.page, instance_id, limit=limit, cursor=cursor, event_type=event_type
        )
    except ValueError as e:
        raise ValidationFailed("cursor must be a nextCursor this service gave") from e
    body = SendEvents.model_validate(
        {
            "id": instance_id,
            "events": [event.to_json() for event in page.events],
            "nextCursor": page.cursor,
        }
    )
    return json_response(body.model_dump(mode="json", exclude_none=True))
