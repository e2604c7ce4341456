"""The stable words of the API: failure codes, providers and kinds of send.

Callers script against these strings (a status body's ``failures[].code``, a request's
``provider``), so they live in the contract, and the engine imports them from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

#: What a send goes through: company mail through SES, or a user's own SMTP account.
Kind = Literal["ses", "smtp"]

#: What an aws-send is: ``transactional`` (the default: a receipt, a password reset — reaches
#: an address that unsubscribed) or ``marketing`` (carries one-click unsubscribe, the subject
#: prefix, and skips unsubscribed addresses).
Category = Literal["transactional", "marketing"]


class Provider(StrEnum):
    """A mail provider whose users send through their own account (app password)."""

    GMAIL = "GMAIL"
    NAVER = "NAVER"
    KAKAO = "KAKAO"

    @classmethod
    def _missing_(cls, value: object) -> Provider | None:
        # Accept "gmail" / "Gmail" as well as "GMAIL".
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None

    @property
    def display_name(self) -> str:
        """The provider's name as users know it ("Gmail")."""
        return self.value.capitalize()


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
    #: On the service's suppression list (a hard bounce or a complaint): not sent (aws-send).
    SUPPRESSED = "SUPPRESSED"
    #: The recipient unsubscribed (one-click unsubscribe): a marketing send skips it.
    UNSUBSCRIBED = "UNSUBSCRIBED"
    #: The recipient's message could not be made: a rendered subject with a line break, or a
    #: rendered part over its size limit (personalised sends).
    RENDER_FAILED = "RENDER_FAILED"
    #: The send was canceled (``POST /api/v1/emails/{id}/cancel``) before this recipient was
    #: sent: never attempted, or pending when the cancel came.
    CANCELED = "CANCELED"
