"""Sending through Amazon SES: one ``SendEmail`` (SESv2) per recipient, several in flight, paced.

Why one message per recipient
    Recipients never see each other, every recipient gets its own SES MessageId, and a failure
    (a rejected address, a throttle) is reported for exactly the recipient it concerns.

How a batch is sent (:meth:`SesSender.send`)
    A call costs tens of milliseconds from Azure to an AWS region, so one call at a time tops
    out near ``1 / latency`` per batch whatever the account allows (20/s at 50 ms). Instead one
    dispatcher takes the recipients in order and starts each ``SendEmail`` on a thread of the
    batch's pool (boto3 clients are thread-safe: one is shared), at the pace
    :class:`~sendmail.sending.pacing.AdaptiveRate` allows: the batch's share of ``MaxSendRate``,
    lowered when SES throttles anyway and raised back gradually. The pace decides the throughput;
    the number of calls in flight is only capped, at ``ceil(rate x observed latency x 2) + 1``
    (Little's law with room for jitter) and never above ``SENDMAIL_SES_MAX_CONCURRENCY``, so a
    latency spike cannot pile up threads. ``on_sent`` runs on the calling thread right after
    each success, before anything else: it hands the message to the ledger as soon as SES
    accepted it (written at once, or with the next group: :mod:`sendmail.sending.runner`), so a
    crash can re-send at most the calls in flight and the successes not yet written.

Where retries happen, and why only here
    A throttled send could be retried at three levels: botocore (standard mode retries
    ``TooManyRequestsException`` 3 times by default, legacy mode 5), the Durable activity and
    the orchestrator; stacked, they multiply, and an activity retry re-runs a whole batch. So
    the send client is built with ``total_max_attempts=1`` (botocore never retries
    ``SendEmail``) and this module retries, per recipient, only what can succeed later:
    throttling and SES 5xx (see :mod:`sendmail.sending.ses_errors`), and connection failures where
    the request never reached SES (refused, connect timeout). A recipient that fails that way goes
    back into the queue while the others go on: after a throttle behind ``uniform(0,
    THROTTLE_RETRY_SECONDS)`` (the batch's pace slows down for everyone instead), after a 5xx or
    an unreachable SES behind a full-jitter backoff — ``uniform(0, min(MAX_BACKOFF_SECONDS,
    BASE_BACKOFF_SECONDS * 2 ** (n - 1)))`` before attempt ``n + 1``.

A transient condition costs time, never a recipient
    No attempt count gives up on a recipient. The batch stops and reports the recipients it has
    not sent as *pending* (:meth:`~sendmail.sending.results.Delivery.postponed`) when its time
    budget or the send's deadline is reached, or when nothing has succeeded for
    :data:`STALL_SECONDS` while SES kept refusing (``stalled``: SES is down or throttling hard, and
    waiting belongs in the orchestration, on a durable timer, not in a worker). Only the
    orchestration turns pending recipients into failures (``SES_THROTTLED`` / ``SES_ERROR``), at
    the send's deadline.

What is never retried
    ``MessageRejected``, ``MailFromDomainNotVerifiedException``, sending paused, account
    suspended and the daily quota ("Daily message quota exceeded", which SESv1 reported as
    ``Throttling``; SESv2 as ``LimitExceededException`` or with that message) cannot succeed by
    retrying now. All but ``MessageRejected`` hold for the whole account, so the first one stops
    the batch: calls in flight finish, nothing new starts, the rest fail with the same code;
    so do credential and configuration errors. A connection that breaks *after* the request was
    sent (read timeout, connection closed) is ambiguous: SES may have sent the mail, and
    ``SendEmail`` has no idempotency token, so it is reported as ``DELIVERY_UNKNOWN`` rather
    than risking a duplicate.

Quota
    ``GetSendQuota`` (SESv1) is the source of truth for the daily quota and the send rate; it
    is an idempotent read, so its client keeps botocore's standard retries (3 attempts).
    ``GetAccount`` (SESv2) only adds whether the account left the sandbox, and may be missing
    (moto does not implement it). Admission's preflight reads (``GetEmailIdentity``,
    ``ListEmailIdentities``, ``GetAccount``: :mod:`sendmail.admission.preflight`) use a
    ``sesv2`` client with the same retrying config (:func:`create_sesv2_read_client`).

Messages in :class:`~sendmail.sending.results.Delivery` are written in
:mod:`sendmail.sending.ses_errors`; raw SES text (which can contain addresses) is never passed on
or logged. boto3 is imported only when a client is made, so importing this module stays cheap.
"""

from __future__ import annotations

import heapq
import logging
import math
import random as _random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sendmail.contract.addresses import ascii_address
from sendmail.contract.vocabulary import FailureCode
from sendmail.platform import telemetry
from sendmail.platform.settings import Settings, get_settings
from sendmail.sending.content import RenderFailed
from sendmail.sending.mime import MailParts, compose
from sendmail.sending.pacing import AdaptiveRate
from sendmail.sending.results import BatchReport, Delivery
from sendmail.sending.ses_errors import (
    NOT_REACHED,
    UNKNOWN,
    UNREACHABLE,
    SesFailure,
    classify,
    error_code,
)

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_ses.client import SESClient
    from mypy_boto3_sesv2.client import SESV2Client
    from mypy_boto3_sesv2.type_defs import SendEmailRequestTypeDef

logger = logging.getLogger(__name__)

#: A throttled recipient is tried again after uniform(0, this) seconds: the batch's pace, not the
#: recipient's own backoff, answers throttling (a backoff growing per recipient only leaves the
#: unlucky ones waiting at the end of a storm).
THROTTLE_RETRY_SECONDS = 1.0
#: First backoff ceiling in seconds after a 5xx or an unreachable SES; it doubles every attempt.
BASE_BACKOFF_SECONDS = 0.5
#: No single wait before a recipient's next attempt is longer than this.
MAX_BACKOFF_SECONDS = 20.0
#: botocore timeouts for the send client (seconds).
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0
#: Attempts botocore makes for the (idempotent) quota reads.
QUOTA_MAX_ATTEMPTS = 3
#: Batch activities one worker runs at once: host.json's ``maxConcurrentActivityFunctions``;
#: ``PYTHON_THREADPOOL_THREAD_COUNT`` is this plus the orchestrator slots (12), as the Python
#: worker runs both on one pool (tests/infra pins them together).
ACTIVITY_SLOTS = 8
#: A batch in which nothing succeeded for this long while SES kept refusing returns its
#: recipients as pending, so the orchestration waits on a durable timer instead of a worker.
STALL_SECONDS = 30.0
#: While a batch waits (the window is full, a retry is not due), it asks ``halt()`` at least
#: this often (seconds).
HALT_CHECK_SECONDS = 0.25
#: Latency assumed before the first answer (seconds): only caps the first calls in flight.
INITIAL_LATENCY_SECONDS = 0.25
#: Weight of the newest observation in the latency estimate.
LATENCY_SMOOTHING = 0.2


class _Gauge:
    """A process-wide count that threads raise and lower."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self, change: int) -> None:
        with self._lock:
            self._value += change

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


_IN_FLIGHT = _Gauge()


def calls_in_flight() -> int:
    """``SendEmail`` calls of this process started and not yet settled: answered *and*, when
    sent, recorded in the ledger. A crash now can mail at most these recipients twice."""
    return _IN_FLIGHT.value


def send_client_config(max_concurrency: int = 16) -> Config:
    """The botocore config of the ``SendEmail`` client: botocore does not retry (see above).

    One client serves every batch of the worker: it keeps a connection for each call that can
    be in flight (``ACTIVITY_SLOTS`` batches x ``max_concurrency``), where botocore's default of
    10 would open and drop connections under load.
    """
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_pool_connections=ACTIVITY_SLOTS * max_concurrency,
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
        config=send_client_config(settings.SENDMAIL_SES_MAX_CONCURRENCY),
    )


def create_sesv2_read_client(settings: Settings, *, endpoint_url: str | None = None) -> SESV2Client:
    """A ``sesv2`` client for reads (``GetEmailIdentity``, ``ListEmailIdentities``,
    ``GetAccount``: sendmail/admission/preflight.py): idempotent, so it keeps botocore's standard
    retries, unlike the sending client."""
    import boto3

    return boto3.session.Session().client(
        "sesv2",
        region_name=settings.AWS_REGION,
        endpoint_url=endpoint_url,
        config=quota_client_config(),
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


class SesSender:
    """Sends one SES message per recipient and reports a :class:`Delivery` for each.

    ``client`` (``sesv2``) and ``quota_client`` (v1 ``ses``) are made from ``settings`` on first
    use when not given; give them in tests (e.g. clients of a moto server). ``sleep``, ``random``
    (uniform in [0, 1)) and ``clock`` drive pacing and backoff; ``stall_seconds`` is
    :data:`STALL_SECONDS` unless a test shortens it. One instance is shared by the batches of a
    worker process.
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
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self._settings = settings if settings is not None else get_settings()
        self._stall_seconds = stall_seconds
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

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1`` (``attempt`` 1-based): full jitter, capped."""
        ceiling = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2.0 ** (attempt - 1))
        return ceiling * self._random()

    def send(
        self,
        sender: str,
        recipients: Sequence[str],
        content: MailParts | Callable[[str], MailParts],
        *,
        on_sent: Callable[[int, str], None] | None = None,
        max_rate: float | None = None,
        start_rate: float | None = None,
        time_budget: float | None = None,
        tags: Mapping[str, str] | None = None,
        halt: Callable[[], bool] | None = None,
    ) -> BatchReport:
        """Send ``content`` from ``sender`` to each recipient separately.

        ``content`` is the message (the same for everyone) or a function making a recipient's
        (:class:`~sendmail.sending.content.MessageMaker`): called just before that recipient's
        call, so a batch never holds more than the calls in flight of messages; one that raises
        :class:`~sendmail.sending.content.RenderFailed` fails that recipient ``RENDER_FAILED``.
        Returns one :class:`Delivery` per recipient, in input order: sent, failed, or pending
        (see the module docs). ``on_sent(index, message_id)`` runs right after each success
        (record it before anything else can fail). ``max_rate`` (calls a second) is the most
        this batch may use, ``start_rate`` where its pace starts (the previous batch's end);
        ``time_budget`` (seconds) is how long it may run before returning what is left as
        pending; ``tags`` are SES message tags (SESv2 ``EmailTags``) set on every message — the
        send id, so that SES's events find their send. ``halt()`` is asked before each call
        starts (and at least every :data:`HALT_CHECK_SECONDS` while the batch waits): True
        stops the batch as its time budget would — calls in flight finish, the rest is pending
        (the send was paused or canceled: :mod:`sendmail.sending.control`). Expected SES
        failures become deliveries; anything else raises once the calls in flight have finished.
        """
        if not recipients:
            return BatchReport([], rate=max_rate)
        make = content if callable(content) else (lambda _recipient: content)

        def request(recipient: str) -> SendEmailRequestTypeDef:
            return self._request(sender, recipient, make(recipient), tags)

        run = _BatchRun(
            self,
            self._sesv2(),
            request,
            list(recipients),
            on_sent,
            AdaptiveRate(max_rate, start=start_rate, clock=self._clock),
            None if time_budget is None else self._clock() + max(0.0, time_budget),
            halt,
        )
        # The pace counts in the rate gauge while the batch runs; its throttles once it ends.
        with telemetry.pacing(lambda: run.limiter.rate):
            report = run.run()
        telemetry.throttled("ses", run.limiter.throttles)
        counts = {"sent": 0, "failed": 0, "pending": 0}
        for delivery in report.deliveries:
            counts["sent" if delivery.ok else "pending" if delivery.pending else "failed"] += 1
        logger.info(
            "SES batch: %d sent, %d failed, %d pending%s; %d throttled, rate %.1f/s",
            counts["sent"],
            counts["failed"],
            counts["pending"],
            " (stalled)" if report.stalled else "",
            run.limiter.throttles,
            report.rate or 0.0,
        )
        return report

    def _request(
        self,
        sender: str,
        recipient: str,
        parts: MailParts,
        tags: Mapping[str, str] | None = None,
    ) -> SendEmailRequestTypeDef:
        """One ``SendEmail`` with the whole message as ``Content.Raw``: multipart and extra
        headers (List-Unsubscribe) go out exactly as :mod:`sendmail.sending.mime` wrote them, and
        what devhost's SES keeps is what a recipient gets. No Message-ID: SES sets its own."""
        raw = compose(sender, recipient, parts, message_id=None)
        request: SendEmailRequestTypeDef = {
            "FromEmailAddress": ascii_address(sender),  # SES takes domains in ASCII only
            "Destination": {"ToAddresses": [ascii_address(recipient)]},
            "Content": {"Raw": {"Data": raw}},
        }
        configuration_set = self._settings.SENDMAIL_SES_CONFIGURATION_SET
        if configuration_set:
            request["ConfigurationSetName"] = configuration_set
        if tags:
            request["EmailTags"] = [{"Name": name, "Value": value} for name, value in tags.items()]
        return request

    def call(
        self, client: SESV2Client, request: SendEmailRequestTypeDef
    ) -> tuple[str | None, SesFailure | None, str]:
        """One ``SendEmail``: (message id, failure, detail for the log). Others raise."""
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            response = client.send_email(**request)
        except ClientError as exc:
            return None, classify(exc), error_code(exc)
        except BotoConnectionError:
            # Refused, connect timeout, TLS handshake: the request never reached SES.
            return None, UNREACHABLE, "connection failed"
        except HTTPClientError:
            # Read timeout or connection closed after sending: SES may have sent it.
            return None, UNKNOWN, "connection broke after sending"
        return response["MessageId"], None, ""

    # --- quota -------------------------------------------------------------------------------

    def get_quota(self) -> SendQuota:
        """The account's quota from SESv1 ``GetSendQuota``. botocore errors propagate."""
        response = self._ses().get_send_quota()
        return SendQuota(
            max_24_hour_send=float(response["Max24HourSend"]),
            max_send_rate=float(response["MaxSendRate"]),
            sent_last_24_hours=float(response["SentLast24Hours"]),
        )

    def account(self) -> dict[str, Any]:
        """SESv2 ``GetAccount`` as SES answered it (botocore errors propagate)."""
        return dict(self._sesv2().get_account())

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


_UNWRITABLE = SesFailure(
    FailureCode.SES_MESSAGE_REJECTED,
    "The message could not be written for this address (SES takes ASCII addresses only).",
)


class _BatchRun:
    """One batch in flight: the queue, the dispatcher, the callbacks of the calls (see above)."""

    def __init__(
        self,
        owner: SesSender,
        client: SESV2Client,
        request: Callable[[str], SendEmailRequestTypeDef],
        recipients: list[str],
        on_sent: Callable[[int, str], None] | None,
        limiter: AdaptiveRate,
        end: float | None,
        halt: Callable[[], bool] | None = None,
    ) -> None:
        self.owner, self.client, self.request, self.recipients = (
            owner,
            client,
            request,
            recipients,
        )
        self.on_sent = on_sent
        self.limiter = limiter
        self.end = end
        self.halt = halt
        self.clock = owner._clock
        self.max_concurrency = owner._settings.SENDMAIL_SES_MAX_CONCURRENCY
        self.results: list[Delivery | None] = [None] * len(recipients)
        #: (not before, index, attempts made): what is left to send, earliest first.
        self.queue: list[tuple[float, int, int]] = [(0.0, i, 0) for i in range(len(recipients))]
        self.last_failure: dict[int, SesFailure] = {}
        self.in_flight = 0
        self.latency = INITIAL_LATENCY_SECONDS
        self.stop: SesFailure | None = None
        self.error: BaseException | None = None
        self.stalled = False
        self.last_progress = self.clock()
        self.refusals_since_progress = 0
        self.cond = threading.Condition()

    def run(self) -> BatchReport:
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="ses-send") as pool:
            while (item := self._next()) is not None:
                try:
                    delay = self.limiter.reserve()
                    if delay > 0:
                        if self.end is not None and self.clock() + delay >= self.end:
                            self._put_back(item)
                            break
                        self.owner._sleep(delay)
                        if self._over() or self._halted():  # a stop came while pacing
                            self._put_back(item)
                            break
                    pool.submit(self._call, *item)
                except BaseException:
                    self._put_back(item)
                    raise
        # leaving the pool waited for every call in flight: each has reported
        if self.error is not None:
            raise self.error
        return self._report()

    def _window(self) -> int:
        rate = self.limiter.rate
        if rate is None:
            return self.max_concurrency
        return max(1, min(self.max_concurrency, math.ceil(rate * self.latency * 2) + 1))

    def _over(self) -> bool:
        with self.cond:
            return self.stop is not None or self.error is not None

    def _halted(self) -> bool:
        return self.halt is not None and self.halt()

    def _next(self) -> tuple[int, int] | None:
        """The next (index, attempts) to send, when it may go; None when the batch is over."""
        with self.cond:
            while True:
                if self.stop is not None or self.error is not None:
                    return None
                if not self.queue and self.in_flight == 0:
                    return None
                if self.queue and self._halted():  # paused or canceled: nothing new starts
                    return None
                now = self.clock()
                if self.end is not None and now >= self.end:
                    return None
                stall = self.owner._stall_seconds
                if self.refusals_since_progress and now - self.last_progress >= stall:
                    self.stalled = True
                    return None
                # woken earlier by every call that reports; a halt is looked for in time
                wake = now + (HALT_CHECK_SECONDS if self.halt is not None else 1.0)
                if self.refusals_since_progress:
                    wake = min(wake, self.last_progress + stall)
                if self.end is not None:
                    wake = min(wake, self.end)
                if self.queue and self.in_flight < self._window():
                    not_before, index, attempts = self.queue[0]
                    if not_before <= now:
                        heapq.heappop(self.queue)
                        self.in_flight += 1
                        _IN_FLIGHT.add(1)
                        return index, attempts
                    wake = min(wake, not_before)
                self.cond.wait(max(0.001, wake - now))

    def _put_back(self, item: tuple[int, int]) -> None:
        with self.cond:
            index, attempts = item
            heapq.heappush(self.queue, (0.0, index, attempts))
            self.in_flight -= 1
            _IN_FLIGHT.add(-1)
            self.cond.notify_all()

    def _call(self, index: int, attempts: int) -> None:
        """One call on a pool thread; reports to the dispatcher whatever happens."""
        started = self.clock()
        message_id: str | None = None
        failure: SesFailure | None = None
        detail = ""
        unexpected: BaseException | None = None
        try:
            try:
                request = self.request(self.recipients[index])
            except RenderFailed as e:  # this recipient's message cannot be made: never sent
                failure, detail = SesFailure(FailureCode.RENDER_FAILED, str(e)), "render failed"
            except ValueError:  # an address no header can hold (admission refuses them)
                failure, detail = _UNWRITABLE, "message not built"
            else:
                message_id, failure, detail = self.owner.call(self.client, request)
            if message_id is not None and self.on_sent is not None:
                self.on_sent(index, message_id)  # the ledger first: nothing may come between
        except BaseException as exc:  # not an SES answer (a bug): fail the batch after
            unexpected = exc
        finished = self.clock()
        with self.cond:
            try:
                self.in_flight -= 1
                _IN_FLIGHT.add(-1)
                self.latency += LATENCY_SMOOTHING * (finished - started - self.latency)
                if message_id is not None:
                    self.results[index] = Delivery.sent(self.recipients[index], message_id)
                    self.limiter.on_success()
                    self._progress(finished)
                    self.stalled = False  # a late success: SES is not refusing everything
                elif failure is not None:
                    self._failed(index, attempts + 1, failure, detail, finished)
            except BaseException as exc:
                unexpected = unexpected or exc
            finally:
                if unexpected is not None and self.error is None:
                    self.error = unexpected
                self.cond.notify_all()

    def _failed(
        self, index: int, attempts: int, failure: SesFailure, detail: str, now: float
    ) -> None:
        if failure.retryable:
            if failure.throttle:
                self.limiter.on_throttle()
            self.last_failure[index] = failure
            self.refusals_since_progress += 1
            delay = (
                THROTTLE_RETRY_SECONDS * self.owner._random()
                if failure.throttle
                else self.owner.backoff(attempts)
            )
            retry_at = now + delay
            heapq.heappush(self.queue, (retry_at, index, attempts))
            logger.debug("SES %s on recipient #%d, attempt %d", detail, index, attempts)
            return
        logger.info("SES send to recipient #%d failed: %s (%s)", index, failure.code, detail)
        recipient = self.recipients[index]
        self.results[index] = Delivery.failed(recipient, failure.code, failure.message)
        self._progress(now)
        if failure.batch_wide and self.stop is None:
            self.stop = failure
            logger.warning(
                "SES %s at recipient #%d: the batch stops; %d recipients not attempted",
                failure.code,
                index,
                len(self.queue),
            )

    def _progress(self, now: float) -> None:
        self.last_progress = now
        self.refusals_since_progress = 0

    def _report(self) -> BatchReport:
        deliveries: list[Delivery] = []
        for index, result in enumerate(self.results):
            recipient = self.recipients[index]
            if result is not None:
                deliveries.append(result)
            elif self.stop is not None:
                message = f"Not attempted after an earlier recipient: {self.stop.message}"
                deliveries.append(Delivery.failed(recipient, self.stop.code, message))
            else:
                last = self.last_failure.get(index, NOT_REACHED)
                deliveries.append(Delivery.postponed(recipient, last.code, last.message))
        stop = self.stop
        return BatchReport(
            deliveries,
            rate=self.limiter.rate,
            stalled=self.stalled,
            stop=(stop.code, stop.message) if stop is not None else None,
        )
