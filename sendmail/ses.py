"""Sending through Amazon SES: one ``SendEmail`` (SESv2) per recipient, with retries decided here.

Why one message per recipient
    Recipients never see each other, every recipient gets its own SES MessageId, and a failure
    (a rejected address, a throttle) is reported for exactly the recipient it concerns.

Where retries happen, and why only here
    A throttled send could be retried at three levels: botocore (standard mode retries
    ``TooManyRequestsException`` / ``Throttling`` 3 times by default, legacy mode 5), the Durable
    activity's ``RetryOptions`` and the orchestrator. Stacked, they multiply: 5 botocore attempts
    x 3 activity attempts x 2 orchestrator rounds is 30 calls for one recipient, and an activity
    retry re-runs the whole batch. So the send client is built with
    ``total_max_attempts=1`` (botocore never retries ``SendEmail``) and this module retries, per
    recipient, only what can succeed later:

    - throttling (``TooManyRequestsException``, v1 ``Throttling``, HTTP 429) and SES 5xx, and
      connection failures where the request never reached SES (refused, connect timeout);
    - with exponential backoff and full jitter: before attempt ``n + 1`` it sleeps
      ``uniform(0, min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** (n - 1)))``;
    - at most ``settings.SENDMAIL_SES_MAX_ATTEMPTS`` attempts (default 6: ceilings 0.5, 1, 2, 4
      and 8 s, at most 15.5 s and about 7.75 s expected of sleep for one recipient).

    When a recipient still fails after its last attempt, SES is overloaded or down for the whole
    batch: the remaining recipients are failed at once with the same code (``SES_THROTTLED`` or
    ``SES_ERROR``) instead of spending up to 15 s each, and the caller may schedule them again
    later. The activity therefore raises only for the unexpected, and its own retry never
    re-sends a batch because of throttling.

What is never retried
    ``MessageRejected``, ``MailFromDomainNotVerifiedException``, sending paused, account
    suspended and the daily quota ("Daily message quota exceeded", which SESv1 reported as
    ``Throttling``; SESv2 as ``LimitExceededException`` or with that message) cannot succeed by
    retrying now. All but ``MessageRejected`` hold for the whole account, so the first one fails
    the rest of the batch without calling SES again; so do credential and configuration errors.
    A connection that breaks *after* the request was sent (read timeout, connection closed) is
    ambiguous: SES may have sent the mail, and ``SendEmail`` has no idempotency token, so it is
    reported as ``DELIVERY_UNKNOWN`` rather than risking a duplicate.

Quota
    ``GetSendQuota`` (SESv1) is the source of truth for the daily quota and the send rate; it
    is an idempotent read, so its client keeps botocore's standard retries (3 attempts).
    ``GetAccount`` (SESv2) only adds whether the account left the sandbox, and may be missing
    (moto does not implement it).

Messages in :class:`~sendmail.results.Delivery` are written here; raw SES text (which can
contain addresses) is never passed on or logged. boto3 is imported only when a client is made,
so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import random as _random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sendmail.results import Delivery, FailureCode
from sendmail.settings import Settings, get_settings

if TYPE_CHECKING:
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from mypy_boto3_ses.client import SESClient
    from mypy_boto3_sesv2.client import SESV2Client
    from mypy_boto3_sesv2.type_defs import SendEmailRequestTypeDef

logger = logging.getLogger(__name__)

#: First backoff ceiling in seconds; it doubles on every further attempt.
BASE_BACKOFF_SECONDS = 0.5
#: No single sleep between two attempts is longer than this.
MAX_BACKOFF_SECONDS = 20.0
#: botocore timeouts for the send client (seconds).
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0
#: Attempts botocore makes for the (idempotent) quota reads.
QUOTA_MAX_ATTEMPTS = 3

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


def send_client_config() -> Config:
    """The botocore config of the ``SendEmail`` client: botocore does not retry (see above)."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
    )


def quota_client_config() -> Config:
    """The botocore config of the quota client: reads are idempotent, botocore may retry."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": QUOTA_MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
    )


def create_sesv2_client(settings: Settings, *, endpoint_url: str | None = None) -> SESV2Client:
    """A ``sesv2`` client for sending. boto3 honours ``AWS_ENDPOINT_URL(_SESV2)`` by itself."""
    import boto3

    # A session per client: creating clients from boto3's default session is not thread-safe.
    return boto3.session.Session().client(
        "sesv2",
        region_name=settings.AWS_REGION,
        endpoint_url=endpoint_url,
        config=send_client_config(),
    )


def create_ses_client(settings: Settings, *, endpoint_url: str | None = None) -> SESClient:
    """A v1 ``ses`` client for ``GetSendQuota``. boto3 honours ``AWS_ENDPOINT_URL(_SES)``."""
    import boto3

    return boto3.session.Session().client(
        "ses",
        region_name=settings.AWS_REGION,
        endpoint_url=endpoint_url,
        config=quota_client_config(),
    )


@dataclass(frozen=True, slots=True)
class SendQuota:
    """The account's sending limits as SES reports them (``GetSendQuota``).

    ``max_24_hour_send`` is -1 when the account has no daily limit. SES counts recipients.
    """

    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float

    @property
    def unlimited(self) -> bool:
        return self.max_24_hour_send < 0

    def remaining(self) -> float | None:
        """Recipients that may still be sent in the current 24 hours; None when unlimited."""
        if self.unlimited:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)


@dataclass(frozen=True, slots=True)
class _Failure:
    """How one failed attempt is handled."""

    code: FailureCode
    message: str
    #: Another attempt may succeed (throttling, 5xx, connection not established).
    retryable: bool = False
    #: Every later recipient of the batch would get the same answer: stop calling SES.
    batch_wide: bool = False


_REJECTED = _Failure(
    FailureCode.SES_MESSAGE_REJECTED,
    "Amazon SES rejected the message (for example an unverified sender, or a recipient that "
    "the SES sandbox does not allow).",
)
_MAIL_FROM = _Failure(
    FailureCode.SES_MAIL_FROM_NOT_VERIFIED,
    "The sender's custom MAIL FROM domain is not verified in Amazon SES.",
    batch_wide=True,
)
_PAUSED = _Failure(
    FailureCode.SES_SENDING_PAUSED,
    "Amazon SES sending is paused for this account or configuration set.",
    batch_wide=True,
)
_SUSPENDED = _Failure(
    FailureCode.SES_ACCOUNT_SUSPENDED,
    "The Amazon SES account is suspended.",
    batch_wide=True,
)
_DAILY_QUOTA = _Failure(
    FailureCode.SES_DAILY_QUOTA_EXCEEDED,
    "The Amazon SES daily sending quota is used up; send again after it resets.",
    batch_wide=True,
)
_THROTTLED = _Failure(
    FailureCode.SES_THROTTLED,
    "Amazon SES kept throttling the sending rate; send again later.",
    retryable=True,
)
_UNAVAILABLE = _Failure(
    FailureCode.SES_ERROR, "Amazon SES was unavailable; send again later.", retryable=True
)
_UNREACHABLE = _Failure(
    FailureCode.SES_ERROR, "Amazon SES could not be reached; send again later.", retryable=True
)
_UNKNOWN = _Failure(
    FailureCode.DELIVERY_UNKNOWN,
    "The connection to Amazon SES broke after the message was handed over; it may have been "
    "sent, so it was not sent again.",
)

_BY_CODE: dict[str, _Failure] = {
    "MessageRejected": _REJECTED,
    "MailFromDomainNotVerifiedException": _MAIL_FROM,
    "MailFromDomainNotVerified": _MAIL_FROM,
    "SendingPausedException": _PAUSED,
    "AccountSendingPausedException": _PAUSED,
    "ConfigurationSetSendingPausedException": _PAUSED,
    "AccountSuspendedException": _SUSPENDED,
    "LimitExceededException": _DAILY_QUOTA,
}


def _error_code(exc: ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "") or "")
    return _SAFE_CODE.sub("", code)[:64] or "unknown"


def _http_status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return int(status or 0)


def _classify(exc: ClientError) -> _Failure:
    """Map an SES error response to how it is reported and whether it is retried."""
    code = _error_code(exc)
    text = str(exc.response.get("Error", {}).get("Message", "") or "").casefold()
    status = _http_status(exc)
    if _DAILY_QUOTA_TEXT in text:
        return _DAILY_QUOTA
    known = _BY_CODE.get(code)
    if known is not None:
        return known
    if code in _THROTTLING_CODES or status == 429:
        return _THROTTLED
    if code in _TRANSIENT_CODES or status >= 500:
        return _UNAVAILABLE
    if code in _CONFIGURATION_CODES or status in (401, 403):
        return _Failure(
            FailureCode.SES_ERROR,
            f"Amazon SES refused the request ({code}); check the service's AWS credentials, "
            "region and configuration set.",
            batch_wide=True,
        )
    return _Failure(FailureCode.SES_ERROR, f"Amazon SES refused the message ({code}).")


class _Pacer:
    """Spaces calls at least ``1 / rate`` seconds apart (no bursts); no rate means no pacing."""

    def __init__(
        self, rate: float | None, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = clock()

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


class SesSender:
    """Sends one SES message per recipient and reports a :class:`Delivery` for each.

    ``client`` (``sesv2``) and ``quota_client`` (v1 ``ses``) are made from ``settings`` on first
    use when not given; give them in tests (e.g. clients of a moto server). ``sleep`` and
    ``random`` (uniform in [0, 1)) drive the backoff. One instance may be shared by threads.
    """

    def __init__(
        self,
        client: SESV2Client | None = None,
        *,
        settings: Settings | None = None,
        quota_client: SESClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings if settings is not None else get_settings()
        self._clock = clock
        self._client = client
        self._quota_client = quota_client
        self._sleep = sleep
        self._random = random
        self._lock = threading.Lock()

    # --- clients -----------------------------------------------------------------------------

    def _sesv2(self) -> SESV2Client:
        with self._lock:
            if self._client is None:
                self._client = create_sesv2_client(self._settings)
            return self._client

    def _ses(self) -> SESClient:
        with self._lock:
            if self._quota_client is None:
                self._quota_client = create_ses_client(self._settings)
            return self._quota_client

    # --- sending -----------------------------------------------------------------------------

    @property
    def max_attempts(self) -> int:
        return self._settings.SENDMAIL_SES_MAX_ATTEMPTS

    def backoff(self, attempt: int) -> float:
        """Seconds to sleep after failed attempt ``attempt`` (1-based): full jitter, capped."""
        ceiling = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2.0 ** (attempt - 1))
        return ceiling * self._random()

    def send(
        self,
        sender: str,
        recipients: Sequence[str],
        subject: str,
        body: str,
        *,
        on_sent: Callable[[int, str], None] | None = None,
        max_rate: float | None = None,
    ) -> list[Delivery]:
        """Send ``subject``/``body`` from ``sender`` to each recipient separately.

        Returns one :class:`Delivery` per recipient, in input order. ``on_sent(index,
        message_id)`` runs right after each successful send (record it before anything else
        can fail). Expected SES failures become failed deliveries; anything else raises.
        ``max_rate`` (calls per second) paces every ``SendEmail`` call, retries included, so
        that batches sharing the account's ``MaxSendRate`` are not throttled in the first place.
        """
        if not recipients:
            return []
        client = self._sesv2()
        pacer = _Pacer(max_rate, self._clock, self._sleep)
        results: list[Delivery] = []
        retries = 0
        stop: _Failure | None = None
        for index, recipient in enumerate(recipients):
            if stop is not None:
                results.append(Delivery.failed(recipient, stop.code, stop.message))
                continue
            request = self._request(sender, recipient, subject, body)
            message_id, failure, attempts = self._send_one(client, request, index, pacer)
            retries += attempts - 1
            if message_id is not None:
                results.append(Delivery.sent(recipient, message_id))
                if on_sent is not None:
                    on_sent(index, message_id)
                continue
            assert failure is not None
            if failure.retryable:
                # Retries are used up: SES is overloaded or down for everyone in this batch.
                message = f"{failure.message} (gave up after {attempts} attempts)"
                results.append(Delivery.failed(recipient, failure.code, message))
                stop = _Failure(
                    failure.code, f"Not attempted after an earlier recipient: {failure.message}"
                )
            else:
                results.append(Delivery.failed(recipient, failure.code, failure.message))
                if failure.batch_wide:
                    stop = failure
            if stop is not None:
                remaining = len(recipients) - index - 1
                logger.warning(
                    "SES %s at recipient #%d; failing the %d remaining recipients of the batch",
                    stop.code,
                    index,
                    remaining,
                )
        sent = sum(1 for d in results if d.ok)
        logger.info(
            "SES batch done: %d sent, %d failed, %d retries",
            sent,
            len(results) - sent,
            retries,
        )
        return results

    def _request(
        self, sender: str, recipient: str, subject: str, body: str
    ) -> SendEmailRequestTypeDef:
        request: SendEmailRequestTypeDef = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [recipient]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
                }
            },
        }
        configuration_set = self._settings.SENDMAIL_SES_CONFIGURATION_SET
        if configuration_set:
            request["ConfigurationSetName"] = configuration_set
        return request

    def _send_one(
        self, client: SESV2Client, request: SendEmailRequestTypeDef, index: int, pacer: _Pacer
    ) -> tuple[str | None, _Failure | None, int]:
        """(message id, failure, attempts made) for one recipient."""
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        attempt = 0
        while True:
            attempt += 1
            pacer.wait()
            try:
                response = client.send_email(**request)
            except ClientError as exc:
                failure = _classify(exc)
                detail = _error_code(exc)
            except BotoConnectionError:
                # Refused, connect timeout, TLS handshake: the request never reached SES.
                failure, detail = _UNREACHABLE, "connection failed"
            except HTTPClientError:
                # Read timeout or connection closed after sending: SES may have sent it.
                failure, detail = _UNKNOWN, "connection broke after sending"
            else:
                return response["MessageId"], None, attempt
            if not failure.retryable or attempt >= self.max_attempts:
                logger.info(
                    "SES send to recipient #%d failed: %s (%s) after %d attempt(s)",
                    index,
                    failure.code,
                    detail,
                    attempt,
                )
                return None, failure, attempt
            delay = self.backoff(attempt)
            logger.debug(
                "SES %s on recipient #%d, attempt %d/%d; retrying in %.2fs",
                detail,
                index,
                attempt,
                self.max_attempts,
                delay,
            )
            self._sleep(delay)

    # --- quota -------------------------------------------------------------------------------

    def get_quota(self) -> SendQuota:
        """The account's quota from SESv1 ``GetSendQuota``. botocore errors propagate."""
        response = self._ses().get_send_quota()
        return SendQuota(
            max_24_hour_send=float(response["Max24HourSend"]),
            max_send_rate=float(response["MaxSendRate"]),
            sent_last_24_hours=float(response["SentLast24Hours"]),
        )

    def production_access(self) -> bool | None:
        """Whether the account left the SES sandbox (SESv2 ``GetAccount``); None if unknown."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._sesv2().get_account()
        except (ClientError, BotoCoreError) as exc:
            logger.info(
                "SES GetAccount unavailable (%s); sandbox status unknown", type(exc).__name__
            )
            return None
        value = response.get("ProductionAccessEnabled")
        return bool(value) if value is not None else None
