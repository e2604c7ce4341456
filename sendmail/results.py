"""What a sender reports for each recipient: the contract between senders and activities."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureCode(StrEnum):
    """Why a recipient was not sent. Stable strings: callers see them in the status body."""

    SES_MESSAGE_REJECTED = "SES_MESSAGE_REJECTED"
    SES_MAIL_FROM_NOT_VERIFIED = "SES_MAIL_FROM_NOT_VERIFIED"
    SES_SENDING_PAUSED = "SES_SENDING_PAUSED"
    SES_ACCOUNT_SUSPENDED = "SES_ACCOUNT_SUSPENDED"
    SES_DAILY_QUOTA_EXCEEDED = "SES_DAILY_QUOTA_EXCEEDED"
    SES_THROTTLED = "SES_THROTTLED"
    SES_ERROR = "SES_ERROR"
    SMTP_AUTH_FAILED = "SMTP_AUTH_FAILED"
    SMTP_SENDER_REFUSED = "SMTP_SENDER_REFUSED"
    SMTP_RECIPIENT_REFUSED = "SMTP_RECIPIENT_REFUSED"
    SMTP_TEMPORARY_FAILURE = "SMTP_TEMPORARY_FAILURE"
    SMTP_CONNECTION_FAILED = "SMTP_CONNECTION_FAILED"
    SMTP_ERROR = "SMTP_ERROR"
    BATCH_FAILED = "BATCH_FAILED"
    DELIVERY_UNKNOWN = "DELIVERY_UNKNOWN"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome for one recipient: a Message-ID, or a failure code and a readable message.

    ``message`` is written by this service (never raw library or server text with secrets).
    """

    recipient: str
    message_id: str | None = None
    code: FailureCode | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.message_id is not None

    @classmethod
    def sent(cls, recipient: str, message_id: str) -> Delivery:
        return cls(recipient=recipient, message_id=message_id)

    @classmethod
    def failed(cls, recipient: str, code: FailureCode, message: str) -> Delivery:
        return cls(recipient=recipient, code=code, message=message)
