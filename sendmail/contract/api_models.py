"""Response bodies of the v1 API, as pydantic models: what callers receive, field by field.

The request models live in :mod:`sendmail.contract.models` (they validate); these describe the
answers. Both feed the OpenAPI document (:mod:`sendmail.contract.openapi`), so the document is
generated from the code rather than kept by hand. Field names are v1's (camelCase).
``extra="forbid"`` keeps a model from silently accepting a body that grew a field the document does
not describe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from sendmail.contract.vocabulary import FailureCode, Kind

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


def _absent_date_time(schema: JsonDict) -> None:
    """:func:`_absent_when_none` for a date-time."""
    _absent_when_none(schema)
    schema["format"] = "date-time"


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
        description=(
            "One Message-ID per recipient sent, in recipient order (sends of up to "
            "`SENDMAIL_STATUS_INLINE_RECIPIENTS` recipients; larger: empty, see `recipientsUrl`)."
        )
    )
    failures: list[RecipientFailure] = Field(
        description="Every recipient that was not sent, with a code and a message (as above)."
    )
    recipientsUrl: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Only for sends larger than the inline limit: every outcome, paged.",
        json_schema_extra=_absent_when_none,
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
    canceled: int = Field(
        default=0,
        ge=0,
        description=(
            "Recipients not sent because the send was canceled (code `CANCELED`). Once the "
            "send is over, `sent + failed + canceled == total`."
        ),
    )


_EXAMPLE_DELIVERY: JsonDict = {
    "delivered": 1,
    "bounced": 0,
    "complained": 0,
    "rejected": 0,
    "delayed": 0,
}
_EXAMPLE_EVENT: JsonDict = {
    "recipient": "user1@example.com",
    "messageId": _EXAMPLE_MESSAGE_ID,
    "type": "Bounce",
    "subType": "Permanent/General",
    "timestamp": "2026-11-29T10:00:09.123Z",
    "diagnostic": "smtp; 550 5.1.1 user unknown",
}

#: The SES event types the service keeps (``eventType`` / ``notificationType``).
EventTypeName = Literal["Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay"]


class DeliveryCounts(BaseModel):
    """What SES reported after sending: recipients with at least one event of each type.

    A recipient delayed and then delivered counts in both `delayed` and `delivered`: the counts
    are per type, not a partition of the send.
    """

    model_config = _examples(_EXAMPLE_DELIVERY)

    delivered: int = Field(ge=0, description="Recipients SES delivered to (Delivery).")
    bounced: int = Field(ge=0, description="Recipients whose mail bounced, hard or soft (Bounce).")
    complained: int = Field(ge=0, description="Recipients who complained (Complaint).")
    rejected: int = Field(ge=0, description="Recipients of messages SES rejected (Reject).")
    delayed: int = Field(ge=0, description="Recipients whose delivery was delayed.")


class SendEvent(BaseModel):
    """One SES event for one recipient of a send."""

    model_config = _examples(_EXAMPLE_EVENT)

    recipient: str = Field(description="The address the event is about, as SES reported it.")
    messageId: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The SES message id (one of the send's `messageIds`).",
        json_schema_extra=_absent_when_none,
    )
    type: EventTypeName = Field(description="The SES event type.")
    subType: str | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "Bounce: `bounceType/bounceSubType` (`Permanent/General`, `Transient/MailboxFull`, "
            "…); Complaint: the feedback type (`abuse`, …); DeliveryDelay: the delay type."
        ),
        json_schema_extra=_absent_when_none,
    )
    timestamp: str = Field(
        description="When it happened, as SES reported it (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    diagnostic: str | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "The receiving server's answer (bounces, delays, deliveries) or SES's reason "
            "(rejects), at most 1,000 characters."
        ),
        json_schema_extra=_absent_when_none,
    )


class SendEvents(BaseModel):
    """``GET /api/v1/emails/{id}/events``: a page of a send's events, oldest first."""

    model_config = _examples(
        {"id": _EXAMPLE_ID, "events": [_EXAMPLE_EVENT], "nextCursor": "ZToyMDI2MTEyOVQx"}
    )

    id: str = Field(description="The send's id.")
    events: list[SendEvent] = Field(description="At most `limit` events, in time order.")
    nextCursor: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Pass as `cursor` for the next page; absent on the last page.",
        json_schema_extra=_absent_when_none,
    )


class RecipientOutcome(BaseModel):
    """One recipient of a send and what became of it."""

    email: str = Field(description="The address, as the request gave it.")
    status: Literal["sent", "failed", "canceled", "pending"] = Field(
        description=(
            "`sent` (SES or the SMTP server took it), `failed` (with `code` and `message`; "
            "suppressed addresses included, as `SUPPRESSED`), `canceled` (the send was "
            "canceled before this recipient was sent; code `CANCELED`), or `pending` while not "
            "yet decided. Once the send is over nothing is `pending`: a recipient whose outcome "
            "was never recorded is `failed` as `DELIVERY_UNKNOWN`."
        )
    )
    messageId: str | SkipJsonSchema[None] = Field(
        default=None, description="When sent.", json_schema_extra=_absent_when_none
    )
    code: FailureCode | SkipJsonSchema[None] = Field(
        default=None, description="When failed.", json_schema_extra=_absent_when_none
    )
    message: str | SkipJsonSchema[None] = Field(
        default=None, description="When failed: what happened.", json_schema_extra=_absent_when_none
    )


class RecipientsPage(BaseModel):
    """``GET /api/v1/emails/{id}/recipients``: a page of a send's recipients, in request order."""

    model_config = _examples(
        {
            "id": _EXAMPLE_ID,
            "recipients": [
                {"email": "user1@example.com", "status": "sent", "messageId": _EXAMPLE_MESSAGE_ID},
                {
                    "email": "user2@example.com",
                    "status": "failed",
                    "code": "SUPPRESSED",
                    "message": "The address is on the suppression list (a bounce or complaint).",
                },
                {"email": "user3@example.com", "status": "pending"},
            ],
            "nextCursor": "cjEuMw",
        }
    )

    id: str = Field(description="The send's id.")
    recipients: list[RecipientOutcome] = Field(
        description="At most `limit` recipients, in the order the request listed them."
    )
    nextCursor: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Pass as `cursor` for the next page; absent on the last page.",
        json_schema_extra=_absent_when_none,
    )


#: Why an address is on the suppression list.
SuppressionReasonName = Literal["BOUNCE", "COMPLAINT", "UNSUBSCRIBED"]
_REASON_DESCRIPTION = (
    "`BOUNCE`: a hard (permanent) bounce; `COMPLAINT`: a complaint (both: aws-send skips the "
    "address, `SUPPRESSED`); `UNSUBSCRIBED`: the recipient used the one-click unsubscribe link "
    "(marketing sends skip it, `UNSUBSCRIBED`; transactional mail still reaches it)."
)
_EXAMPLE_BOUNCE: JsonDict = {
    "reason": "BOUNCE",
    "createdTime": "2026-11-29T10:00:10Z",
    "eventType": "Bounce",
    "subType": "Permanent/General",
    "diagnostic": "smtp; 550 5.1.1 user unknown",
}


class SuppressionEntry(BaseModel):
    """One reason an address is on the list: a delivery entry (the first hard bounce or
    complaint) or an unsubscribe entry. An address has at most one of each."""

    model_config = _examples(_EXAMPLE_BOUNCE)

    reason: SuppressionReasonName = Field(description=_REASON_DESCRIPTION)
    createdTime: str = Field(
        description="When the entry was made (UTC).", json_schema_extra={"format": "date-time"}
    )
    eventType: EventTypeName | SkipJsonSchema[None] = Field(
        default=None,
        description="The SES event that caused it (none for an unsubscribe).",
        json_schema_extra=_absent_when_none,
    )
    subType: str | SkipJsonSchema[None] = Field(
        default=None, description="Its subtype.", json_schema_extra=_absent_when_none
    )
    diagnostic: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The receiving server's answer, if any.",
        json_schema_extra=_absent_when_none,
    )


class Suppression(BaseModel):
    """An address on the suppression list, with every reason it is there (``entries``). The
    top-level ``reason``, ``createdTime`` and event fields repeat the first entry (the bounce or
    complaint when there is one), as the answer was before an address could carry several."""

    model_config = _examples(
        {
            "email": "user1@example.com",
            **_EXAMPLE_BOUNCE,
            "entries": [
                _EXAMPLE_BOUNCE,
                {"reason": "UNSUBSCRIBED", "createdTime": "2026-10-02T08:30:00Z"},
            ],
        }
    )

    email: str = Field(
        description="The address, normalised (trimmed, lower-case, the domain in ASCII form)."
    )
    reason: SuppressionReasonName = Field(description=f"The first entry's. {_REASON_DESCRIPTION}")
    createdTime: str = Field(
        description="When the first entry was made (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    eventType: EventTypeName | SkipJsonSchema[None] = Field(
        default=None,
        description="The SES event that caused the first entry.",
        json_schema_extra=_absent_when_none,
    )
    subType: str | SkipJsonSchema[None] = Field(
        default=None, description="Its subtype.", json_schema_extra=_absent_when_none
    )
    diagnostic: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The receiving server's answer, if any.",
        json_schema_extra=_absent_when_none,
    )
    entries: list[SuppressionEntry] = Field(
        min_length=1,
        max_length=2,
        description=(
            "Every reason the address is on the list, the bounce or complaint first: at most "
            "one of them (the first event wins) and at most one unsubscribe."
        ),
    )


class UnsubscribeReceipt(BaseModel):
    """``200`` to a one-click unsubscribe: the address is unsubscribed (now, or before)."""

    model_config = _examples({"unsubscribed": True})

    unsubscribed: Literal[True] = Field(
        description="Always true: marketing sends skip the address from now on."
    )


class EventsReceipt(BaseModel):
    """``200`` to SNS: the message was verified and handled (SNS only needs the status)."""

    model_config = _examples(
        {
            "type": "Notification",
            "recorded": 1,
            "duplicates": 0,
            "suppressed": 1,
            "unattributed": 0,
            "ignored": False,
            "replayed": False,
        }
    )

    type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"] = Field(
        description="The SNS message type. A SubscriptionConfirmation was confirmed."
    )
    recorded: int = Field(ge=0, description="Recipient events stored now.")
    duplicates: int = Field(
        ge=0, description="Recipient events an earlier delivery of this SNS message stored."
    )
    suppressed: int = Field(ge=0, description="Addresses put on the suppression list now.")
    unattributed: int = Field(
        ge=0, description="Events without the send-id tag: they count for no send."
    )
    ignored: bool = Field(
        description="Not an SES event the service keeps (Send, Open, Click, an SNS test message)."
    )
    replayed: bool = Field(
        default=False,
        description=(
            "This notification (its MessageId) was acted on before: nothing was done again "
            "(a replay never puts back an address an operator took off the suppression list)."
        ),
    )


class SnsMessage(BaseModel):
    """An Amazon SNS message as SNS posts it to an HTTPS subscription (SNS sends it with
    `Content-Type: text/plain`; the route reads the body as JSON whatever the type)."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "Type": "Notification",
                    "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
                    "TopicArn": "arn:aws:sns:ap-northeast-2:123456789012:sendmail-ses-events",
                    "Message": '{"eventType":"Delivery","mail":{"messageId":"…"},"delivery":{}}',
                    "Timestamp": "2026-11-29T10:00:09.500Z",
                    "SignatureVersion": "2",
                    "Signature": "EXAMPLEpH+…",
                    "SigningCertURL": "https://sns.ap-northeast-2.amazonaws.com/"
                    "SimpleNotificationService-0000000000000000000000.pem",
                    "UnsubscribeURL": "https://sns.ap-northeast-2.amazonaws.com/"
                    "?Action=Unsubscribe&SubscriptionArn=…",
                }
            ]
        },
    )

    Type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    MessageId: str
    TopicArn: str = Field(description="Must be in `SENDMAIL_SNS_TOPIC_ARNS`.")
    Message: str = Field(description="Notification: an SES event record, as JSON text.")
    Timestamp: str
    SignatureVersion: Literal["1", "2"]
    Signature: str
    SigningCertURL: str = Field(
        description="`https://sns.<the topic's region>.amazonaws.com/….pem`."
    )
    Subject: str | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_absent_when_none)
    SubscribeURL: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_when_none
    )
    Token: str | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_absent_when_none)
    UnsubscribeURL: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_when_none
    )


#: Where a send is (the status route's ``state``).
SendState = Literal["scheduled", "running", "paused", "completed", "canceled", "failed"]
_STATE_DESCRIPTION = (
    "Where the send is: `scheduled` (waiting for `scheduledAt`), `running`, `paused` (nothing "
    "new is sent until it is resumed; its deadline does not run), `completed`, `canceled` "
    "(from the moment of the cancel: nothing new is sent; the counts are final once the "
    "answer is `200`), or `failed` (the send ended as Failed or Terminated before every "
    "recipient was attempted)."
)


class ControlResult(BaseModel):
    """``200`` to ``POST /api/v1/emails/{id}/pause``, ``/resume`` and ``/cancel``: the change is
    recorded; no new message starts more than 2 seconds after this answer."""

    model_config = _examples(
        {"id": _EXAMPLE_ID, "state": "paused", "changed": True, "statusUrl": _EXAMPLE_STATUS_URL}
    )

    id: str = Field(description="The send's id.")
    state: SendState = Field(description=_STATE_DESCRIPTION)
    changed: bool = Field(
        description=(
            "False when the send already was as the call asks (a repeated call): nothing changed."
        )
    )
    statusUrl: str = Field(
        description="Absolute URL of the status route for this send.",
        json_schema_extra={"format": "uri"},
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
            "state": "completed",
            "runtimeStatus": "Completed",
            "createdTime": "2026-11-29T10:00:00Z",
            "lastUpdatedTime": "2026-11-29T10:00:04Z",
            "progress": {"total": 2, "sent": 1, "failed": 1, "pending": 0},
            "messageIds": [_EXAMPLE_MESSAGE_ID],
            "failures": [_EXAMPLE_FAILURE],
            "delivery": _EXAMPLE_DELIVERY,
        },
        {
            "id": _EXAMPLE_ID,
            "kind": "smtp",
            "state": "running",
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
    state: SendState = Field(description=_STATE_DESCRIPTION)
    scheduledAt: str | SkipJsonSchema[None] = Field(
        default=None,
        description="When a scheduled send starts (UTC); absent for a send made to start at once.",
        json_schema_extra=_absent_date_time,
    )
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
        description=(
            "Once completed, for sends of up to `SENDMAIL_STATUS_INLINE_RECIPIENTS` (10,000) "
            "recipients: one Message-ID per recipient sent, in recipient order. Larger sends: "
            "empty (page through `recipientsUrl`)."
        )
    )
    failures: list[RecipientFailure] = Field(
        description=(
            "Once completed, for sends of up to `SENDMAIL_STATUS_INLINE_RECIPIENTS` "
            "recipients: every recipient that was not sent. Larger sends: empty."
        )
    )
    recipientsUrl: str | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "Every recipient's outcome, paged, in request order (`GET /api/v1/emails/{id}/"
            "recipients`). Present for every send that has a stored list."
        ),
        json_schema_extra=_absent_when_none,
    )
    error: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Only when the send ended as Failed, Terminated or Canceled.",
        json_schema_extra=_absent_when_none,
    )
    delivery: DeliveryCounts | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "SES sends: what SES reported after sending, as its events arrive (also after the "
            "send completed). Absent for SMTP sends, and when the event store cannot be read."
        ),
        json_schema_extra=_absent_when_none,
    )
    metadata: dict[str, str] | SkipJsonSchema[None] = Field(
        default=None,
        description="The request's `metadata`, as given. Absent when the request had none.",
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
class GuardStatus(BaseModel):
    """The account guard: ``ok``, or ``tripped`` with why and since when."""

    state: Literal["ok", "tripped"] = Field(
        description="`tripped`: bulk aws-sends are paused and refused (503) until a reset."
    )
    reason: str | None = Field(description="Why it tripped (the rate and its threshold).")
    since: str | None = Field(
        description="When it tripped (UTC).", json_schema_extra={"format": "date-time"}
    )


class AccountQuota(BaseModel):
    max24HourSend: float = Field(description="SES's 24-hour quota (-1: unlimited).")
    maxSendRate: float = Field(description="Messages a second SES allows.")
    sentLast24Hours: float = Field(description="Sent in the last 24 hours, as SES counts.")


class AccountRates(BaseModel):
    """What the service measured from SES's events over the guard's window."""

    windowHours: float
    sample: int = Field(ge=0, description="Messages delivered or permanently bounced.")
    bounced: int = Field(ge=0, description="Permanent bounces.")
    complained: int = Field(ge=0)
    bounceRate: float = Field(ge=0)
    complaintRate: float = Field(ge=0)


class AccountStatus(BaseModel):
    """``GET /api/v1/account``: the SES account, the service's own rates and the guard."""

    model_config = _examples(
        {
            "sandbox": False,
            "enforcementStatus": "HEALTHY",
            "quota": {"max24HourSend": 50000, "maxSendRate": 14, "sentLast24Hours": 1200},
            "rates": {
                "windowHours": 24,
                "sample": 1180,
                "bounced": 9,
                "complained": 0,
                "bounceRate": 0.007627,
                "complaintRate": 0,
            },
            "guard": {"state": "ok", "reason": None, "since": None},
        }
    )

    sandbox: bool | None = Field(description="SES sandbox (None: GetAccount unavailable).")
    enforcementStatus: str | None = Field(
        description="SES's `EnforcementStatus`: `HEALTHY`, `PROBATION` (trips the guard), ..."
    )
    quota: AccountQuota | None = Field(description="None when GetSendQuota failed.")
    rates: AccountRates
    guard: GuardStatus


class GuardReset(BaseModel):
    """``POST /api/v1/account/guard/reset``: the guard is ok; the sends it paused resumed."""

    model_config = _examples(
        {
            "guard": {"state": "ok", "reason": None, "since": None},
            "wasTripped": True,
            "resumedSends": 2,
        }
    )

    guard: GuardStatus
    wasTripped: bool = Field(description="False when it was not tripped (nothing changed).")
    resumedSends: int = Field(ge=0, description="Sends the guard had paused, resumed now.")


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Accepted,
    SendResult,
    EmailStatus,
    ControlResult,
    AccountStatus,
    GuardReset,
    ErrorEnvelope,
    Health,
    SendEvents,
    RecipientsPage,
    Suppression,
    EventsReceipt,
    UnsubscribeReceipt,
)
