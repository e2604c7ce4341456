"""The suppression list, for operators: look an address up, take it off.

``GET /api/v1/suppressions/{email}`` answers 200 with the address's entries (a bounce or
complaint, an unsubscribe, or both: ``entries``, the first one's fields repeated at the top as
before an address could carry several) or 404. ``DELETE`` answers 204 when it removed an
entry, or 404 when there was none to remove: without ``?reason`` the bounce or complaint (an
operator confirmed the address is good again) and never the recipient's unsubscribe — consent is
the person's, and clearing a bounce must not sign them up again; ``?reason=UNSUBSCRIBED`` removes
the unsubscribe (the person asked for mail again), ``?reason=BOUNCE`` or ``COMPLAINT`` only that
entry. Addresses are compared normalised (trimmed, lower-case, the domain in ASCII form:
:mod:`sendmail.contract.addresses`). What puts an address on the list, and what it means for
sending: :mod:`sendmail.feedback.suppression`.
"""

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import azure.functions as func

from api.http import json_response, v1_errors

if TYPE_CHECKING:
    from sendmail.feedback.ses_events import SuppressionReason

logger = logging.getLogger(__name__)

bp = func.Blueprint()

SUPPRESSION_ROUTE = "v1/suppressions/{email}"


def _address(req: func.HttpRequest) -> str:
    from sendmail.contract.addresses import ADDRESS_PATTERN, MAX_ADDRESS_CHARS
    from sendmail.contract.errors import ValidationFailed

    email = str(req.route_params.get("email", ""))
    if len(email) > MAX_ADDRESS_CHARS or not re.match(ADDRESS_PATTERN, email):
        raise ValidationFailed("email must be an email address")
    return email


def _reason(req: func.HttpRequest) -> "SuppressionReason | None":
    from sendmail.contract.errors import ValidationFailed

    reason = req.params.get("reason")
    if reason is None:
        return None
    known: dict[str, SuppressionReason] = {
        "BOUNCE": "BOUNCE",
        "COMPLAINT": "COMPLAINT",
        "UNSUBSCRIBED": "UNSUBSCRIBED",
    }
    if reason in known:
        return known[reason]
    raise ValidationFailed("reason must be BOUNCE, COMPLAINT or UNSUBSCRIBED")


@bp.function_name("suppression_get")
@bp.route(route=SUPPRESSION_ROUTE, methods=["GET"])
@v1_errors
async def suppression_get(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.contract.api_models import Suppression
    from sendmail.contract.errors import NotFound
    from sendmail.feedback.suppression import listing_json

    email = _address(req)
    entries = await asyncio.to_thread(services.suppressions().get, email)
    if not entries:
        raise NotFound("The address is not on the suppression list.")
    body = Suppression.model_validate(listing_json(entries))
    return json_response(body.model_dump(mode="json", exclude_none=True))


@bp.function_name("suppression_delete")
@bp.route(route=SUPPRESSION_ROUTE, methods=["DELETE"])
@v1_errors
async def suppression_delete(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.contract.errors import NotFound

    email = _address(req)
    reason = _reason(req)
    suppressions = services.suppressions()
    if reason is None:  # the delivery entry: never the recipient's own unsubscribe
        entries = await asyncio.to_thread(suppressions.get, email)
        delivery = [e.reason for e in entries if e.reason != "UNSUBSCRIBED"]
        if not delivery:
            raise NotFound(
                "The address has no bounce or complaint on the suppression list"
                + (
                    "; its unsubscribe is removed only with ?reason=UNSUBSCRIBED, when the "
                    "person asked for mail again."
                    if entries
                    else "."
                )
            )
        reason = delivery[0]
    removed = await asyncio.to_thread(suppressions.remove, email, reason)
    if not removed:
        raise NotFound(f"The address is not on the suppression list with reason {reason}.")
    logger.warning(
        "An address at %s was taken off the suppression list (%s)",
        email.rpartition("@")[2].lower(),
        reason,
    )
    return func.HttpResponse(status_code=204, headers={"Cache-Control": "no-store"})
