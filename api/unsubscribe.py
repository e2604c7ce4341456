"""One-click unsubscribe (RFC 8058): the two anonymous routes a marketing message links to.

``POST /api/v1/unsubscribe/{token}`` unsubscribes: 200 (``{"unsubscribed": true}``, or a short
page when the request prefers HTML, as the GET page's button does), again 200 when repeated; 404
for a token that does not read, recording nothing. ``GET`` answers the page with the button and
never unsubscribes. Both are anonymous — mail clients and recipients hold no function key; the
token is the authority — and both answer 404 as a page when the request prefers HTML (a person's
browser) and in the v1 envelope otherwise, whose ``path`` is the route template: the token is
written nowhere, not even in a 500's log line. Without ``SENDMAIL_UNSUBSCRIBE_KEYS`` they answer 500
(logged as a configuration error): no token can exist without a key, so a request here means
the keys were lost, which an operator must hear about rather than a 404 that looks like a bad
link. What happens and why: :mod:`sendmail.feedback.unsubscribes`.

Logs name the send id at most: never the address, never the token (it unsubscribes whoever it
names).
"""

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable

import azure.functions as func

from api.http import error_response, json_response, url_for

logger = logging.getLogger(__name__)

bp = func.Blueprint()

#: As :data:`sendmail.sending.unsubscribe.UNSUBSCRIBE_ROUTE` (a test holds them equal): not
#: imported from there, so importing the app does not import pydantic and cryptography.
UNSUBSCRIBE_ROUTE = "v1/unsubscribe/{token}"

_MEDIA_RANGE = re.compile(r"^\s*([^;\s]+)\s*(?:;(.*))?$")
_Q = re.compile(r"(?:^|;)\s*q\s*=\s*([^;\s]*)", re.IGNORECASE)


def prefers_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header ranks ``text/html`` above ``application/json`` (a browser's
    does; a mail client's ``*/*`` or none does not)."""

    def quality(media: str) -> float:
        kind = media.split("/", 1)[0]
        best: tuple[int, float] = (-1, 0.0)
        for part in (accept or "").split(","):
            match = _MEDIA_RANGE.match(part)
            if not match:
                continue
            name = match.group(1).lower()
            if name == media:
                rank = 2
            elif name == f"{kind}/*":
                rank = 1
            elif name == "*/*":
                rank = 0
            else:
                continue
            q = _Q.search(match.group(2) or "")
            try:
                value = float(q.group(1)) if q else 1.0
            except ValueError:
                value = 0.0
            best = max(best, (rank, value))
        return best[1]

    return quality("text/html") > quality("application/json")


def _without_token(req: func.HttpRequest) -> func.HttpRequest:
    """``req`` with the route template for its path: what an error answer and its log line
    name (api/http.py logs a 500's path, and the token unsubscribes whoever it names)."""
    return func.HttpRequest(
        method=req.method,
        url=url_for(req, f"/api/{UNSUBSCRIBE_ROUTE}"),
        headers=dict(req.headers),
        params={},
        route_params={},
        body=b"",
    )


Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def _token_errors(handler: Handler) -> Handler:
    """:func:`api.http.v1_errors` for these routes: every error in the v1 envelope, with the
    route template, never the token, as its path (in the answer and in the log)."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
        except Exception as e:  # one place for all errors, as v1_errors
            return error_response(_without_token(req), e)

    return wrapper


def _page(body: str, status: int) -> func.HttpResponse:
    from sendmail.feedback.unsubscribes import PAGE_HEADERS

    return func.HttpResponse(
        body, status_code=status, headers=PAGE_HEADERS, mimetype="text/html", charset="utf-8"
    )


def _not_found(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail.contract.errors import NotFound
    from sendmail.feedback.unsubscribes import invalid_page

    if prefers_html(req.headers.get("Accept")):
        return _page(invalid_page(), 404)
    raise NotFound("This unsubscribe link is not valid.")


@bp.function_name("unsubscribe_page")
@bp.route(route=UNSUBSCRIBE_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@_token_errors
async def unsubscribe_page(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.feedback.unsubscribes import confirm_page, mask_address, preview

    token = str(req.route_params.get("token", ""))
    found = preview(services.unsubscribe_tokens(), token)
    if found is None:
        return _not_found(req)
    return _page(confirm_page(mask_address(found.email), action=token), 200)


def _notify_unsubscribed(send_id: str, email: str) -> None:
    """Queue ``email.unsubscribed`` (no endpoint: nothing). Never fails the unsubscribe: the
    address is on the list already, and a person must not see an error for it (logged)."""
    from datetime import UTC, datetime

    from sendmail import services
    from sendmail.feedback.webhooks.events import email_event
    from sendmail.feedback.webhooks.outbox import emit, send_metadata

    try:
        config = services.webhooks()
        if not config.wants("email.unsubscribed"):
            return
        event = email_event(
            "email.unsubscribed",
            send_id=send_id,
            timestamp=datetime.now(UTC),
            recipient=email,
            metadata=send_metadata(services.sends(), send_id),
        )
        emit(config, services.webhook_queue(), event)
    except Exception:
        logger.warning(
            "send %s: the email.unsubscribed webhook was not queued", send_id, exc_info=True
        )


@bp.function_name("unsubscribe")
@bp.route(route=UNSUBSCRIBE_ROUTE, methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@_token_errors
async def unsubscribe(req: func.HttpRequest) -> func.HttpResponse:
    from sendmail import services
    from sendmail.feedback.unsubscribes import done_page, mask_address
    from sendmail.feedback.unsubscribes import unsubscribe as record

    token = str(req.route_params.get("token", ""))
    tokens = services.unsubscribe_tokens()
    done = await asyncio.to_thread(record, tokens, services.suppressions(), token)
    if done is None:
        return _not_found(req)
    logger.info(
        "send %s: a recipient unsubscribed%s", done.send_id, "" if done.added else " (again)"
    )
    if done.added:  # the email.unsubscribed webhook, once per unsubscribe
        await asyncio.to_thread(_notify_unsubscribed, done.send_id, done.email)
    if prefers_html(req.headers.get("Accept")):
        return _page(done_page(mask_address(done.email)), 200)
    return json_response({"unsubscribed": True})
