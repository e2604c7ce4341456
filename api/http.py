"""HTTP plumbing shared by the routes: JSON responses, the v1 error envelope, ``Prefer: wait``.

:func:`v1_errors` is the one place where errors become responses: a
:class:`~sendmail.contract.errors.SendMailError` becomes its envelope, anything else is logged with
its traceback and becomes the generic 500 — no internal text reaches the caller.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func

from sendmail.contract.constants import MAX_WAIT_SECONDS

logger = logging.getLogger(__name__)

P = ParamSpec("P")

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6})\"?", re.IGNORECASE)


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
        mimetype="application/json",
        charset="utf-8",
    )


def request_path(req: func.HttpRequest) -> str:
    return str(urlsplit(req.url).path) or "/"


def loggable_path(req: func.HttpRequest) -> str:
    """The request's path (decoded) with each route parameter's value replaced by its name
    (``/api/v1/suppressions/{email}``): a path can name an address or hold a token, and the log
    must do neither."""
    from urllib.parse import unquote

    path = unquote(request_path(req))
    for name, value in (req.route_params or {}).items():
        if value:
            path = path.replace(str(value), "{" + name + "}")
    return path


def url_for(req: func.HttpRequest, path: str) -> str:
    """An absolute URL on the same scheme and host as the request."""
    parts = urlsplit(req.url)
    return str(urlunsplit((parts.scheme, parts.netloc, path, "", "")))


def preferred_wait(req: func.HttpRequest) -> int | None:
    """Seconds the caller is willing to wait (``Prefer: wait=N``), capped; None if not asked."""
    match = _WAIT.search(req.headers.get("Prefer", "") or "")
    if not match:
        return None
    return min(int(match.group(1)), MAX_WAIT_SECONDS)


def error_response(req: func.HttpRequest, error: Exception) -> func.HttpResponse:
    from sendmail.contract.errors import SendMailError, error_envelope, internal_error

    path = request_path(req)
    # A 503 is the caller's to know (the account guard holds bulk sending, with Retry-After).
    if isinstance(error, SendMailError) and (error.status < 500 or error.status == 503):
        return json_response(error_envelope(error, path), error.status, error.headers)
    logged = loggable_path(req)  # no address or token from the path in the log
    if isinstance(error, SendMailError):
        # Configuration problems are for operators: the log says which, the caller sees a 500.
        logger.error("%s %s: %s: %s", req.method, logged, type(error).__name__, error.message)
        return json_response(internal_error(path), 500)
    logger.error("%s %s: unexpected error", req.method, logged, exc_info=error)
    return json_response(internal_error(path), 500)


def v1_errors(
    handler: Callable[P, Awaitable[func.HttpResponse]],
) -> Callable[P, Awaitable[func.HttpResponse]]:
    """Turn every exception of an async HTTP handler into the v1 envelope."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> func.HttpResponse:
        try:
            return await handler(*args, **kwargs)
        except Exception as e:  # one place for all errors
            req = kwargs.get("req")
            if not isinstance(req, func.HttpRequest):
                req = next(a for a in args if isinstance(a, func.HttpRequest))
            return error_response(req, e)

    return wrapper


def retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


def caller_key(req: func.HttpRequest) -> str | None:
    """The function key the caller presented (header first, as the host reads it), or None.
    The host checked it already; the app uses it only to keep callers apart, hashed."""
    return req.headers.get("x-functions-key") or req.params.get("code") or None


def as_json_object(value: Any) -> dict[str, Any] | None:
    """Durable returns outputs and custom status either parsed or as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def page_limit(req: func.HttpRequest, default: int, most: int, problems: list[str]) -> int:
    """The ``limit`` query parameter of a paged route: 1..``most``, ``default`` when absent; a
    bad one adds its problem to ``problems`` (the route answers them together, 400)."""
    text = req.params.get("limit")
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= most:
        problems.append(f"limit must be an integer from 1 to {most}")
        return default
    return int(text)
