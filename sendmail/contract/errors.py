"""The service's error hierarchy and the v1 error envelope, in one place.

Every error a caller can see is a :class:`SendMailError`; :func:`envelope` turns it into the v1
body ``{timestamp, status, error, message, path}``. Anything else is an unexpected error: the HTTP
layer logs it and answers the generic 500 from :func:`internal_error`, never the exception text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import ClassVar


class SendMailError(Exception):
    """Base of every error shown to callers. ``message`` is written for the caller; ``reason``
    is a stable name for metrics (``sendmail.admission.refusals``): the class's, in snake case,
    unless the raiser names it more precisely (``backlog_full``, ``sender_unverified``)."""

    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.reason = reason or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()


class ValidationFailed(SendMailError):
    """The request is malformed or breaks a rule (400)."""

    status = HTTPStatus.BAD_REQUEST

    def __init__(self, problems: str | list[str], *, reason: str | None = None) -> None:
        items = [problems] if isinstance(problems, str) else problems
        super().__init__("Validation failed: " + "; ".join(items), reason=reason)
        self.problems = items


class Forbidden(SendMailError):
    """The caller may not do this (403), e.g. a sender that is not allowed."""

    status = HTTPStatus.FORBIDDEN


class NotFound(SendMailError):
    status = HTTPStatus.NOT_FOUND


class QuotaExceeded(SendMailError):
    """Sending now would exceed a quota (429). ``retry_after`` seconds go into Retry-After."""

    status = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, message: str, *, retry_after: int, reason: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)}, reason=reason)
        self.retry_after = retry_after


class StateConflict(SendMailError):
    """The resource's state does not allow the request (409): resuming a finished send,
    pausing a canceled one."""

    status = HTTPStatus.CONFLICT


class ServiceUnavailable(SendMailError):
    """Not now (503): the account guard holds bulk sending. ``retry_after`` seconds go into
    Retry-After."""

    status = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: int, reason: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)}, reason=reason)
        self.retry_after = retry_after


class KeyReused(SendMailError):
    """The request's Idempotency-Key was used for another request (422)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class KeyInProgress(SendMailError):
    """The first request with this Idempotency-Key is still being processed (409)."""

    status = HTTPStatus.CONFLICT

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ServiceMisconfigured(SendMailError):
    """A setting the request needs is missing or invalid (500; details only in the log)."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR


def utc_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 UTC with a ``Z`` and whole seconds, as v1 wrote it."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def envelope(
    status: int, message: str, path: str, *, now: datetime | None = None
) -> dict[str, object]:
    """The v1 error body."""
    return {
        "timestamp": utc_timestamp(now),
        "status": int(status),
        "error": HTTPStatus(status).phrase,
        "message": message,
        "path": path,
    }


def error_envelope(error: SendMailError, path: str) -> dict[str, object]:
    return envelope(error.status, error.message, path)


def internal_error(path: str) -> dict[str, object]:
    """The generic 500: no internal text reaches the caller."""
    return envelope(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "An unexpected error occurred. It has been logged; please try again later.",
        path,
    )
