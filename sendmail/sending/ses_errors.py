"""What an SES error means for the recipient it concerns: retried, failed, or the whole batch stops.

Stable codes (:class:`~sendmail.contract.vocabulary.FailureCode`) and messages written here; raw
SES text (which can contain addresses) is never passed on. The rules, with their sources in
``sendmail/sending/ses.py``'s module docs:

- throttling (``TooManyRequestsException``, v1 ``Throttling``, HTTP 429) and SES 5xx are
  transient (``retryable``); a throttle also says the pace must come down (``throttle``);
- "Daily message quota exceeded" is never transient, whatever code carries it (SESv1 sent it as
  ``Throttling``); neither are sending paused, account suspended, MAIL FROM not verified,
  credentials and configuration: they hold for every recipient (``batch_wide``);
- ``MessageRejected`` concerns its recipient only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sendmail.contract.vocabulary import FailureCode

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

_THROTTLING_CODES = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "ThrottledException"}
)
_DAILY_QUOTA_TEXT = "daily message quota exceeded"
_TRANSIENT_CODES = frozenset(
    {"InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException"}
)
#: Errors that say the same for every recipient: credentials, permissions, configuration.
_CONFIGURATION_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "NotFoundException",
        "ConfigurationSetDoesNotExist",
    }
)
_SAFE_CODE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class SesFailure:
    """How one failed attempt is handled."""

    code: FailureCode
    message: str
    #: Another attempt may succeed (throttling, 5xx, connection not established).
    retryable: bool = False
    #: Every later recipient of the batch would get the same answer: stop calling SES.
    batch_wide: bool = False
    #: SES refused the call for the account's sending rate (the pace must come down).
    throttle: bool = False


_REJECTED = SesFailure(
    FailureCode.SES_MESSAGE_REJECTED,
    "Amazon SES rejected the message (for example an unverified sender, or a recipient that "
    "the SES sandbox does not allow).",
)
_MAIL_FROM = SesFailure(
    FailureCode.SES_MAIL_FROM_NOT_VERIFIED,
    "The sender's custom MAIL FROM domain is not verified in Amazon SES.",
    batch_wide=True,
)
_PAUSED = SesFailure(
    FailureCode.SES_SENDING_PAUSED,
    "Amazon SES sending is paused for this account or configuration set.",
    batch_wide=True,
)
_SUSPENDED = SesFailure(
    FailureCode.SES_ACCOUNT_SUSPENDED,
    "The Amazon SES account is suspended.",
    batch_wide=True,
)
_DAILY_QUOTA = SesFailure(
    FailureCode.SES_DAILY_QUOTA_EXCEEDED,
    "The Amazon SES daily sending quota is used up; send again after it resets.",
    batch_wide=True,
)
THROTTLED = SesFailure(
    FailureCode.SES_THROTTLED,
    "Amazon SES kept throttling the sending rate until the send's deadline; send again later.",
    retryable=True,
    throttle=True,
)
_UNAVAILABLE = SesFailure(
    FailureCode.SES_ERROR,
    "Amazon SES kept answering with server errors until the send's deadline; send again later.",
    retryable=True,
)
UNREACHABLE = SesFailure(
    FailureCode.SES_ERROR,
    "Amazon SES could not be reached until the send's deadline; send again later.",
    retryable=True,
)
#: A recipient the batch never got to before its deadline (the rate did not allow it).
NOT_REACHED = SesFailure(
    FailureCode.SES_THROTTLED,
    "Not sent before the send's deadline: the account's sending rate did not allow it in time; "
    "send again later.",
    retryable=True,
)
UNKNOWN = SesFailure(
    FailureCode.DELIVERY_UNKNOWN,
    "The connection to Amazon SES broke after the message was handed over; it may have been "
    "sent, so it was not sent again.",
)

_BY_CODE: dict[str, SesFailure] = {
    "MessageRejected": _REJECTED,
    "MailFromDomainNotVerifiedException": _MAIL_FROM,
    "MailFromDomainNotVerified": _MAIL_FROM,
    "SendingPausedException": _PAUSED,
    "AccountSendingPausedException": _PAUSED,
    "ConfigurationSetSendingPausedException": _PAUSED,
    "AccountSuspendedException": _SUSPENDED,
    "LimitExceededException": _DAILY_QUOTA,
}


def error_code(exc: ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "") or "")
    return _SAFE_CODE.sub("", code)[:64] or "unknown"


def _http_status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return int(status or 0)


def classify(exc: ClientError) -> SesFailure:
    """Map an SES error response to how it is reported and whether it is retried."""
    code = error_code(exc)
    text = str(exc.response.get("Error", {}).get("Message", "") or "").casefold()
    status = _http_status(exc)
    if _DAILY_QUOTA_TEXT in text:
        return _DAILY_QUOTA
    known = _BY_CODE.get(code)
    if known is not None:
        return known
    if code in _THROTTLING_CODES or status == 429:
        return THROTTLED
    if code in _TRANSIENT_CODES or status >= 500:
        return _UNAVAILABLE
    if code in _CONFIGURATION_CODES or status in (401, 403):
        return SesFailure(
            FailureCode.SES_ERROR,
            f"Amazon SES refused the request ({code}); check the service's AWS credentials, "
            "region and configuration set.",
            batch_wide=True,
        )
    return SesFailure(FailureCode.SES_ERROR, f"Amazon SES refused the message ({code}).")
