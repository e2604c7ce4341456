"""Response bodies of the v1 API, as pydantic models: what callers receive, field by field.

The request models live in :mod:`sendmail.models` (they validate); these describe the answers.
Both feed the OpenAPI document (:mod:`sendmail.openapi`), so the document is generated from the
code rather than kept by hand. Field names are v1's (camelCase). ``extra="forbid"`` keeps a model
from silently accepting a body that grew a field the document does not describe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from sendmail.jobs import Kind
from sendmail.results import FailureCode

#: Durable Functions' runtime statuses, as the status route reports them.
RuntimeStatus = Literal[
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Canceled",
    "Terminated",
    "ContinuedAsNew",
    "Suspended",
]

_EXAMPLE_ID = "0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5"
_EXAMPLE_STATUS_URL = f"https://sendmail.example.com/api/v1/emails/{_EXAMPLE_ID}"
_EXAMPLE_MESSAGE_ID = "010c0197c4bb3a2b-8a26729f-5b1e-4d8e-9c1a-2f3e4d5c6b7a-000000"
_EXAMPLE_FAILURE: JsonDict = {
    "recipient": "user2@example.com",
    "code": "SES_MESSAGE_REJECTED",
    "message": "SES rejected the message for this recipient.",
}


def _examples(*examples: JsonDict) -> ConfigDict:
    return ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": list(examples)})


def _absent_when_none(schema: JsonDict) -> None:
    """An optional field that is left out, never ``null``: no ``default: null`` in the schema."""
    schema.pop("default", None)


_KIND = Field(description="`ses` for aws-send, `smtp` for user-send.")


class RecipientFailure(BaseModel):
    """A recipient that was not sent, and why."""

    model_config = _examples(_EXAMPLE_FAILURE)

    recipient: str = Field(description="The address as the request spelled it.")
    code: FailureCode = Field(description="Stable failure code (see the README's list).")
    message: str = Field(description="What went wrong, written for the caller.")


class Accepted(BaseModel):
    """``202 Accepted``: the send started; poll ``statusUrl`` (also in ``Location``)."""

    model_config = _examples(
        {
            "id": _EXAMPLE_ID,
            "kind": "ses",
            "runtimeStatus": "Pending",
            "total": 2,
            "statusUrl": _EXAMPLE_STATUS_URL,
        }
    )

    id: str = Field(description="The send's id (the Durable instance id).")
    kind: Kind = _KIND
    runtimeStatus: Literal["Pending"] = Field(description="Always `Pending` when accepted.")
    total: int = Field(ge=1, description="Distinct recipients that will be attempted.")
    statusUrl: str = Field(
        description="Absolute URL of the status route for this send.",
        json_schema_extra={"format": "uri"},
    )


class SendResult(BaseModel):
    """``200`` to ``Prefer: wait=N`` when the send finished in time: v1's synchronous answer."""

    model_config = _examples(
        {
            "id": _EXAMPLE_ID,
            "messageIds": [_EXAMPLE_MESSAGE_ID],
            "failures": [_EXAMPLE_FAILURE],
        }
    )

    id: str = Field(description="The send's id.")
    messageIds: list[str] = Field(
        description="One Message-ID per recipient sent, in recipient order."
    )
    failures: list[RecipientFailure] = Field(
        description="Every recipient that was not sent, with a code and a message."
    )


class StatusProgress(BaseModel):
    """Counts of recipients: sent and failed so far, and pending a retry."""

    model_config = _examples({"total": 2, "sent": 1, "failed": 1, "pending": 0})

    total: int = Field(ge=0, description="Distinct recipients in the send.")
    sent: int = Field(ge=0, description="Recipients sent so far.")
    failed: int = Field(ge=0, description="Recipients that failed so far.")
    pending: int = Field(
        ge=0,
        description=(
            "Recipients waiting for another run of their batch: Amazon SES refused them for now "
            "(throttling, server errors, unreachable), or the run's time ran out first. They "
            "are sent later, or failed once the send's deadline passes."
        ),
    )


class EmailStatus(BaseModel):
    """``GET /api/v1/emails/{id}``: where a send is. ``202`` while it runs, ``200`` once done.

    ``messageIds`` and ``failures`` are filled once the send completed; ``error`` is present only
    when the send ended as ``Failed``, ``Terminated`` or ``Canceled``.
    """

    model_config = _examples(
        {
            "id": _EXAMPLE_ID,
            "kind": "ses",
            "runtimeStatus": "Completed",
            "createdTime": "2026-11-29T10:00:00Z",
            "lastUpdatedTime": "2026-11-29T10:00:04Z",
            "progress": {"total": 2, "sent": 1, "failed": 1, "pending": 0},
            "messageIds": [_EXAMPLE_MESSAGE_ID],
            "failures": [_EXAMPLE_FAILURE],
        },
        {
            "id": _EXAMPLE_ID,
            "kind": "smtp",
            "runtimeStatus": "Running",
            "createdTime": "2026-11-29T10:00:00Z",
            "lastUpdatedTime": "2026-11-29T10:00:02Z",
            "progress": {"total": 40, "sent": 12, "failed": 0, "pending": 0},
            "messageIds": [],
            "failures": [],
        },
    )

    id: str = Field(description="The send's id.")
    kind: Kind = _KIND
    runtimeStatus: RuntimeStatus = Field(description="The Durable runtime status of the send.")
    createdTime: str | None = Field(
        description="When the send started (UTC).", json_schema_extra={"format": "date-time"}
    )
    lastUpdatedTime: str | None = Field(
        description="When the send last made progress (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    progress: StatusProgress
    messageIds: list[str] = Field(
        description="Once completed: one Message-ID per recipient sent, in recipient order."
    )
    failures: list[RecipientFailure] = Field(
        description="Once completed: every recipient that was not sent."
    )
    error: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Only when the send ended as Failed, Terminated or Canceled.",
        json_schema_extra=_absent_when_none,
    )


class ErrorEnvelope(BaseModel):
    """v1's error body: every error the service answers has this shape, with no internal text."""

    model_config = _examples(
        {
            "timestamp": "2025-07-02T15:04:33Z",
            "status": 400,
            "error": "Bad Request",
            "message": "Validation failed: senderEmail must be a valid email address",
            "path": "/api/v1/emails/aws-send",
        }
    )

    timestamp: str = Field(
        description="When the error happened (UTC, whole seconds).",
        json_schema_extra={"format": "date-time"},
    )
    status: int = Field(ge=400, le=599, description="The HTTP status code, repeated.")
    error: str = Field(description="The status code's reason phrase.")
    message: str = Field(description="What was wrong, written for the caller.")
    path: str = Field(description="The request path.")


class Health(BaseModel):
    """``GET /api/health``: the app is up."""

    model_config = _examples({"status": "ok"})

    status: Literal["ok"]


#: Every response model, in the order the document lists them.
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Accepted,
    SendResult,
    EmailStatus,
    ErrorEnvelope,
    Health,
)
