"""The suppression list, for operators: look an address up, take it off.

``GET /api/v1/suppressions/{email}`` answers 200 with the entry or 404; ``DELETE`` answers 204
when it removed the address (an operator confirmed it is good again) or 404 when it was not on
the list. Addresses are compared normalised (trimmed, lower-case, the domain in ASCII form:
:mod:`sendmail.contract.addresses`). What puts an address on the list, and what it means for
sending: :mod:`sendmail.feedback.suppression`.
"""

import asyncio
import logging
import re

import azure.functions as func

from api.http import json_response, v1_errors

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


@bp.function_name("suppression_get")
@bp.route(route=SUPPRESSION_ROUTE, methods=["GET"])
@v1_errors
async def suppression_get(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.contract.api_models import Suppression
    from sendmail.contract.errors import NotFound

    email = _address(req)
    entry = await asyncio.to_thread(services.suppressions().get, email)
    if entry is None:
        raise NotFound("The address is not on the suppression list.")
    body = Suppression.model_validate(entry.to_json())
    return json_response(body.model_dump(mode="json", exclude_none=True))


@bp.function_name("suppression_delete")
@bp.route(route=SUPPRESSION_ROUTE, methods=["DELETE"])
@v1_errors
async def suppression_delete(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.contract.errors import NotFound

    email = _address(req)
    removed = await asyncio.to_thread(services.suppressions().remove, email)
    if not removed:
        raise NotFound("The address is not on the suppression list.")
    logger.warning(
        "An address at %s was taken off the suppression list", email.rpartition("@")[2].lower()
    )
    return func.HttpResponse(status_code=204, headers={"Cache-Control": "no-store"})
