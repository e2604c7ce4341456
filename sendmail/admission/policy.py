"""Admission of a company send: decided before anything starts.

A 403 or 429 must be answered before the orchestration starts — once a 202 is out it is too late.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sendmail.contract.errors import Forbidden, QuotaExceeded
from sendmail.contract.models import AwsEmailRequest
from sendmail.platform.settings import Settings

logger = logging.getLogger(__name__)

#: A rolling 24-hour window frees capacity gradually; there is no exact time to come back.
QUOTA_RETRY_AFTER_SECONDS = 3600


class QuotaSource(Protocol):
    def get_quota(self) -> _Quota: ...


class _Quota(Protocol):
    def remaining(self) -> float | None: ...

    @property
    def max_24_hour_send(self) -> float: ...

    @property
    def max_send_rate(self) -> float: ...


def sender_allowed(sender: str, settings: Settings) -> bool:
    address = sender.lower()
    domain = address.rpartition("@")[2]
    return address in settings.SENDMAIL_ALLOWED_SENDERS or domain in (
        settings.SENDMAIL_ALLOWED_SENDER_DOMAINS
    )


def check_sender(sender: str, settings: Settings) -> None:
    """Raise :class:`Forbidden` (403) for a company sender that is not allowed. Cheap: the
    request parser calls it before it validates a single recipient."""
    if not sender_allowed(sender, settings):
        raise Forbidden(
            f"senderEmail {sender} is not an allowed sender for aws-send; "
            "use a verified company address",
            reason="sender_not_allowed",
        )


def admit_ses(
    request: AwsEmailRequest, settings: Settings, quota: QuotaSource, *, scheduled: bool = False
) -> _Quota:
    """Raise :class:`Forbidden` for a sender not allowed, :class:`QuotaExceeded` past the quota.

    Returns the quota it read (its ``max_send_rate`` paces the send). A scheduled send is only
    refused when it is larger than the whole 24-hour quota (it could never go out in a day):
    what is left now says nothing about its day; its time reads the quota again and reserves
    (``activities/send.py``, ``start_scheduled``).
    """
    check_sender(request.senderEmail, settings)
    needed = len(request.addresses)
    current = quota.get_quota()
    remaining = current.remaining()
    if scheduled and remaining is not None:
        remaining = current.max_24_hour_send
    if remaining is not None and needed > remaining:
        logger.warning("ses quota: %d needed, %d left", needed, int(max(remaining, 0)))
        if needed > current.max_24_hour_send:
            message = (
                f"This send needs {needed} messages but the SES 24-hour quota is "
                f"{int(current.max_24_hour_send)}; split it across days or raise the quota"
            )
        else:
            message = (
                f"This send needs {needed} messages but only {int(max(remaining, 0))} are left "
                "in the SES 24-hour quota; retry later"
            )
        raise QuotaExceeded(message, retry_after=QUOTA_RETRY_AFTER_SECONDS, reason="ses_quota")
    return current
