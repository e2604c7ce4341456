"""A send's events: ``GET /api/v1/emails/{id}/events``.

It lists what SES reported after sending (through SNS, :mod:`api.sns`) per recipient, oldest
first, a page at a time. Blocking work (Azure Tables) runs on a thread, off the event loop.
"""

import asyncio
import re
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from api.http import json_response, page_limit, v1_errors

if TYPE_CHECKING:
    from sendmail.sending.sends import SendRecord

bp = df.Blueprint()

SEND_EVENTS_ROUTE = "v1/emails/{id}/events"
#: Events per page: the default, and the most a caller may ask for.
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_SEND_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


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
    record = await asyncio.to_thread(services.sends().get, instance_id) if kind else None
    if status is None or status.runtime_status is None or kind is None or _purging(record):
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


def _purging(record: "SendRecord | None") -> bool:
    """Retention is deleting the send (a send started before the sends table has no record)."""
    return record is not None and record.purging is not None
