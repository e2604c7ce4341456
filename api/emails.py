"""The v1 routes: send through SES or SMTP, and the status route callers poll.

A send route parses and validates the body, admits the request (allowed sender, SES quota — both
decided before anything starts, since once a 202 is out it is too late for 403 or 429), seals the
SMTP password, starts the orchestration and answers 202 with ``Location`` — or, when the caller
asked with ``Prefer: wait=N`` and the send finishes in time, the v1 ``200 {"messageIds": [...]}``.
Bodies are built from the response models of :mod:`sendmail.contract.api_models`, the same models
the OpenAPI document is generated from. Domain modules are imported inside the handlers: keeping
``function_app`` cheap to import.
"""

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from api.http import (
    as_json_object,
    caller_key,
    json_response,
    page_limit,
    preferred_wait,
    request_path,
    retry_after,
    url_for,
    v1_errors,
)
from orchestrators.names import KIND_BY_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from sendmail.contract.constants import FINISHED_STATUSES
from sendmail.contract.errors import KeyInProgress
from sendmail.platform import telemetry

if TYPE_CHECKING:
    from sendmail.admission.idempotency import Claim
    from sendmail.contract.vocabulary import Category, Kind
    from sendmail.sending.jobs import Mail
    from sendmail.sending.lists import Entry
    from sendmail.sending.sends import SendRecord

logger = logging.getLogger(__name__)

bp = df.Blueprint()

STATUS_ROUTE = "v1/emails/{id}"
RECIPIENTS_ROUTE = "v1/emails/{id}/recipients"
#: Recipients per page of the recipients route: the default, and the most a caller may ask for.
DEFAULT_RECIPIENTS_PAGE = 100
MAX_RECIPIENTS_PAGE = 1000
#: Seconds a poller is asked to wait between status reads while a send runs.
POLL_AFTER_SECONDS = 2


def _counted(
    route: str,
) -> Callable[[Callable[..., Awaitable[func.HttpResponse]]], Callable[..., Any]]:
    """An admission route in a span (``sendmail.admit``; the send's id is added once it is
    known), and each refusal counted by status and reason (``sendmail.admission.refusals``)."""

    def wrap(handler: Callable[..., Awaitable[func.HttpResponse]]) -> Callable[..., Any]:
        @functools.wraps(handler)
        async def counted(
            req: func.HttpRequest, client: df.DurableOrchestrationClient
        ) -> func.HttpResponse:
            from sendmail.contract.errors import SendMailError

            with telemetry.span("sendmail.admit", None, route=route):
                try:
                    return await handler(req, client)
                except SendMailError as refused:
                    telemetry.admission_refused(route, int(refused.status), refused.reason)
                    raise
                except Exception:
                    telemetry.admission_refused(route, 500, "internal")
                    raise

        return counted

    return wrap


def status_url(req: func.HttpRequest, instance_id: str) -> str:
    return url_for(req, f"/api/v1/emails/{instance_id}")


@bp.function_name("aws_send")
@bp.route(route="v1/emails/aws-send", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
@_counted("aws-send")
async def aws_send(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from sendmail import services
    from sendmail.admission.policy import admit_ses, check_sender
    from sendmail.contract.models import AwsEmailRequest, Limits, parse_request
    from sendmail.platform.settings import get_settings
    from sendmail.sending.jobs import SesJob, plan_ses, send_deadline_seconds

    settings = get_settings()
    # Parsing and validating is CPU work that grows with the list: a worker thread's, never the
    # event loop's (test_event_loop.py). A sender not allowed is refused before any recipient
    # is validated.
    request, late = await _parse(
        req,
        functools.partial(
            parse_request,
            AwsEmailRequest,
            req.get_body(),
            Limits.for_aws(settings),
            admit_sender=functools.partial(check_sender, settings=settings),
        ),
    )
    total = len(request.addresses)
    scheduled_at = request.scheduledAt if request.scheduled else None  # decided once
    if request.marketing:  # no marketing mail without its unsubscribe link (500 otherwise)
        _check_marketing(settings)
    claim, replayed = await _idempotency(req, client, "aws-send", request, "ses", total)
    if replayed is not None:
        return replayed
    admission = _Admission(claim)
    async with admission.refusals():
        if late is not None:  # a time now past, and no send under the key: the 400 it is
            raise late
        # A tripped account guard holds bulk sends (503); small transactional ones pass.
        await asyncio.to_thread(_admit_guard, request.category, total)
        # The sender verified in SES (403), and in the sandbox every recipient (400): what SES
        # would refuse for the whole send, told now (sendmail/admission/preflight.py).
        await asyncio.to_thread(_preflight, settings, request.senderEmail, request.addresses)
        # Admission reads SES (boto3, blocking, up to minutes with its retries) and storage: off
        # the event loop, which every async request on this worker shares (test_event_loop.py).
        quota = await asyncio.to_thread(
            functools.partial(
                admit_ses,
                request,
                settings,
                services.ses_sender(),
                scheduled=scheduled_at is not None,
            )
        )
        if scheduled_at is None:  # a scheduled send reserves when its time comes
            await asyncio.to_thread(_admit_backlog, settings)
        services.ledger()  # no send starts that could not be guarded (configuration, no I/O)
        if scheduled_at is None:
            await admission.reserve(total, quota)
        rate = quota.max_send_rate if quota.max_send_rate > 0 else None
        # Lanes share the account's rate, each sending its batches in turn
        # (orchestrators/lanes.py); batches are sized to about a minute of sending at a lane's
        # share.
        lanes, batch_size = plan_ses(
            total,
            rate,
            min_batch=settings.SENDMAIL_SES_BATCH_SIZE,
            max_lanes=settings.SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES,
        )
        # The list and the content go to Blob Storage, the send's record to the sends table;
        # the orchestration input names them (sendmail/sending/lists.py).
        mail = _mail(request, category=request.category)
        stored = await admission.store_send(
            "ses", request.list_entries(), mail, lanes, batch_size, request, scheduled_at
        )
    job = SesJob(
        listRef=admission.instance_id,
        total=total,
        batchSize=stored.batch_size,
        lanes=stored.lanes,
        maxRate=rate,
        deadlineSeconds=send_deadline_seconds(
            total, rate, settings.SENDMAIL_SES_SEND_DEADLINE_SECONDS
        ),
        scheduledAt=scheduled_at,
    )
    instance_id = await admission.start(client, SES_ORCHESTRATOR, job.model_dump(mode="json"))
    logger.info("ses send %s started: %d recipients", instance_id, total)
    telemetry.send_started(instance_id, "aws", total, request.category, scheduled_at is not None)
    return await _accepted(req, client, instance_id, "ses", total)


@bp.function_name("user_send")
@bp.route(route="v1/emails/user-send", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
@_counted("user-send")
async def user_send(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from sendmail import services
    from sendmail.admission import idempotency
    from sendmail.admission.logins import account_key
    from sendmail.contract.models import Limits, UserEmailRequest, parse_request
    from sendmail.platform.settings import get_settings
    from sendmail.sending.jobs import SmtpJob, smtp_plan

    settings = get_settings()
    request, late = await _parse(
        req,
        functools.partial(
            parse_request, UserEmailRequest, req.get_body(), Limits.for_user(settings)
        ),
    )
    total = len(request.addresses)
    scheduled_at = request.scheduledAt if request.scheduled else None  # decided once
    claim, replayed = await _idempotency(req, client, "user-send", request, "smtp", total)
    if replayed is not None:
        return replayed
    admission = _Admission(claim)
    async with admission.refusals():
        if late is not None:  # a time now past, and no send under the key: the 400 it is
            raise late
        if scheduled_at is None:  # the queue now says nothing about the send's time
            await asyncio.to_thread(_admit_backlog, settings)
        # At most SENDMAIL_SMTP_LOGIN_FAILURES_PER_HOUR failed logins per account: 429, and the
        # provider is not tried (sendmail/admission/logins.py).
        await asyncio.to_thread(
            services.login_guard().admit,
            account_key(request.provider, request.senderEmail),
            services.sealer().macs(request.password)[0],
            idempotency.now(),
        )
        services.ledger()  # no send starts that could not be guarded (configuration, no I/O)
        # The password goes to the secret store under the send's id, never into the
        # orchestration input; the send's last step deletes it (sendmail/sending/secrets.py).
        await admission.store_secret(request.password, scheduled_at)
        lanes, batch_size = smtp_plan(total, settings.SENDMAIL_SMTP_CONNECTIONS)
        mail = _mail(request)
        stored = await admission.store_send(
            "smtp", request.list_entries(), mail, lanes, batch_size, request, scheduled_at
        )
        job = SmtpJob(
            listRef=admission.instance_id,
            total=total,
            provider=request.provider,
            secretRef=admission.instance_id,
            connections=stored.lanes,  # one connection per lane of the plan stored
            scheduledAt=scheduled_at,
        )
    instance_id = await admission.start(client, SMTP_ORCHESTRATOR, job.model_dump(mode="json"))
    telemetry.send_started(instance_id, "user", total, "none", scheduled_at is not None)
    logger.info(
        "smtp send %s started: provider %s, %d recipients",
        instance_id,
        job.provider.value,
        total,
    )
    return await _accepted(req, client, instance_id, "smtp", total)


async def _parse(req: func.HttpRequest, parse: Callable[..., Any]) -> tuple[Any, Exception | None]:
    """The request, parsed off the event loop (:func:`parse_request`); and the 400 to answer
    later if the request is valid but for a ``scheduledAt`` now past and carries an
    Idempotency-Key: a retry of a send accepted before its time must find that send (and get
    its answer), so the key is looked up first and the 400 stands only if there is none."""
    from sendmail.contract.errors import ValidationFailed

    try:
        return await asyncio.to_thread(parse), None
    except ValidationFailed as refused:
        if not req.headers.get("Idempotency-Key"):
            raise
        try:
            request = await asyncio.to_thread(functools.partial(parse, past_schedule=True))
        except ValidationFailed:
            raise refused from None
        return request, refused


def _mail(request: Any, category: "Category" = "transactional") -> "Mail":
    """The send's content as stored (sendmail/sending/lists.py)."""
    from sendmail.sending.jobs import Mail

    return Mail(
        sender=request.senderEmail,
        subject=request.subject,
        body=request.body,
        html=request.html,
        category=category,
        personalised=request.personalised,
    )


def _check_marketing(settings: Any) -> None:
    """Marketing mail must carry a working unsubscribe link: the public address, the token
    keys and the footer must be configured (a 500 for operators otherwise, before anything is
    stored or started)."""
    from sendmail import services
    from sendmail.contract.errors import ServiceMisconfigured
    from sendmail.sending.content import footer_template

    if not settings.SENDMAIL_PUBLIC_BASE_URL:
        raise ServiceMisconfigured("marketing mail needs SENDMAIL_PUBLIC_BASE_URL")
    services.unsubscribe_tokens()
    footer_template(settings)


async def _idempotency(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    route: str,
    request: Any,
    kind: str,
    total: int,
) -> "tuple[Claim | None, func.HttpResponse | None]":
    """The ``Idempotency-Key`` step (sendmail/admission/idempotency.py): (the claim this request
    starts its send under, None), or (None, the answer of the send the key already started). No key:
    (None, None). Raises 400, 409 (first request still in progress) or 422 (another request)."""
    from sendmail import services
    from sendmail.admission import idempotency

    key = idempotency.parse_key(req.headers.get(idempotency.HEADER))
    if key is None:
        return None, None
    store = services.idempotency()
    now = idempotency.now()
    password = getattr(request, "password", None)
    macs = services.sealer().macs(password) if password is not None else []
    digests = idempotency.fingerprints(route, request, macs)
    scoped = idempotency.scoped_key(key, caller_key(req))
    claim = await asyncio.to_thread(store.claim, route, scoped, digests, now)
    if claim.start:
        return claim, None
    status = await read_status(client, claim.instance_id)
    if status.runtime_status is not None or claim.started:
        # That send exists (or existed: its history may have been purged since): the same
        # answer as its first, and never a second start.
        logger.info("send %s: the same %s request again", claim.instance_id, route)
        return None, await _accepted(req, client, claim.instance_id, kind, total)
    if now - claim.held < idempotency.TAKEOVER_AFTER:
        raise KeyInProgress(_IN_PROGRESS)
    taken = await asyncio.to_thread(store.take_over, claim, now)
    if taken is None:
        raise KeyInProgress(_IN_PROGRESS)
    logger.warning(
        "send %s: its first request never started it; starting it now", claim.instance_id
    )
    return taken, None


_IN_PROGRESS = (
    "A request with this Idempotency-Key is still being processed; "
    "send it again in a moment to get its answer"
)


def _admit_guard(category: str, total: int) -> None:
    """The account guard's admission (sendmail/admission/guard.py), after tripping it if SES's
    enforcement status (preflight's cached ``GetAccount``) says PROBATION or worse. A guard whose
    table cannot be used admits, logged: it protects the account, it must not stop mail by
    itself."""
    from api.account import trip_on_enforcement
    from sendmail import services
    from sendmail.platform.settings import get_settings
    from sendmail.platform.tables import TableUnavailable

    try:
        guard = services.guard()
    except TableUnavailable:
        logger.warning("the account guard is unavailable; admitting", exc_info=True)
        return
    preflight = services.preflight()
    if preflight is not None and get_settings().SENDMAIL_PREFLIGHT_ENABLED:
        account = preflight.account()
        try:
            trip_on_enforcement(account.enforcement_status if account is not None else None)
        except TableUnavailable:  # the trip or its pauses failed: the admission still decides
            logger.warning("the account guard could not trip on SES's status", exc_info=True)
    guard.admit(category, total)


def _preflight(settings: Any, sender: str, recipients: Sequence[str]) -> None:
    """SES preflight (sendmail/admission/preflight.py): 403 for a sender SES has not verified,
    400 for unverified recipients of a sandboxed account. SES unreadable: admitted (logged)."""
    from sendmail import services

    preflight = services.preflight()
    if preflight is not None and settings.SENDMAIL_PREFLIGHT_ENABLED:
        preflight.check(sender, recipients)


def _admit_backlog(settings: Any) -> None:
    """429 when the task hub's work-item queue holds too many batches
    (sendmail/admission/backlog.py)."""
    from sendmail import services
    from sendmail.admission.backlog import admit_backlog

    probe = services.backlog()
    if probe is not None:
        admit_backlog(probe, settings.SENDMAIL_MAX_QUEUED_BATCHES)


class _Admission:
    """What a request holds before its send starts — its idempotency record, its quota
    reservation — and dropping them when the send does not start: a request refused (403, 429,
    500) does not use up its key or its share of the quota."""

    def __init__(self, claim: "Claim | None") -> None:
        self.claim = claim
        self.instance_id = claim.instance_id if claim is not None else uuid.uuid4().hex
        self.reserved = False
        self.secret_stored = False
        self.send_stored = False

    async def store_send(
        self,
        kind: "Kind",
        recipients: "Sequence[Entry]",
        mail: Any,
        lanes: int,
        batch_size: int,
        request: Any,
        scheduled_at: "datetime | None",
    ) -> "SendRecord":
        """Store the list and content (Blob Storage) and the send's record (the sends table)
        before the send starts: its input only names them. The record stored comes back: its
        plan is the one to start with (a record already there — a retry that took over this
        request's key — keeps its own)."""
        from sendmail import services
        from sendmail.admission import idempotency
        from sendmail.sending.lists import store_send
        from sendmail.sending.sends import SendRecord

        record = SendRecord(
            id=self.instance_id,
            kind=kind,
            total=len(recipients),
            lanes=lanes,
            batch_size=batch_size,
            list_ref=self.instance_id,
            created=idempotency.now(),
            metadata=request.metadata,
            scheduled_at=scheduled_at,
        )
        self.send_stored = True
        await asyncio.to_thread(store_send, services.blobs(), self.instance_id, recipients, mail)
        return await asyncio.to_thread(services.sends().create, record)

    async def store_secret(self, secret: Any, scheduled_at: "datetime | None" = None) -> None:
        """Keep the send's password apart from it, under its id, until the send ends (a
        scheduled send's: until a lifetime past its time; its data key is kept while it is
        stored, whatever the rotation: sendmail/sending/secrets.py)."""
        from sendmail import services
        from sendmail.sending.secrets import SECRET_LIFETIME

        expires = scheduled_at + SECRET_LIFETIME if scheduled_at is not None else None
        await asyncio.to_thread(
            functools.partial(services.secrets().put, self.instance_id, secret, expires=expires)
        )
        self.secret_stored = True

    async def reserve(self, recipients: int, quota: Any) -> None:
        """Reserve the send's recipients in the 24-hour quota
        (sendmail/admission/reservations.py)."""
        if quota.max_24_hour_send < 0:
            return  # no daily limit: nothing to share
        self.reserved = await asyncio.to_thread(_reserve, self.instance_id, recipients, quota)

    @contextlib.asynccontextmanager
    async def refusals(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            await self._drop()
            raise

    async def start(self, client: df.DurableOrchestrationClient, name: str, job: Any) -> str:
        if self.claim is not None:
            # Still this request's key? An admission slower than TAKEOVER_AFTER may have been
            # taken over by a retry, which starts the same instance: then this one starts
            # nothing, and keeps its hands off the key and the reservation (they are the
            # taker's now). Confirming also gives start_new a fresh TAKEOVER_AFTER.
            from sendmail import services
            from sendmail.admission import idempotency

            store = services.idempotency()
            confirmed = await asyncio.to_thread(store.confirm, self.claim, idempotency.now())
            if confirmed is None:
                logger.warning("send %s: its key was taken over; not starting", self.instance_id)
                raise KeyInProgress(_IN_PROGRESS)
            self.claim = confirmed
        try:
            started = str(await client.start_new(name, self.instance_id, job))
        except Exception:
            # Started after all (a timeout on the answer)? Then it is answered as started, and
            # the key and the reservation belong to it; if it surely did not start, they are
            # dropped. In doubt (the status cannot be read either), they stay (expiring).
            try:
                status = await read_status(client, self.instance_id)
            except Exception:
                logger.warning("send %s: start failed, status unknown", self.instance_id)
                raise
            if status.runtime_status is not None:
                logger.warning("send %s: start answered an error but it runs", self.instance_id)
                await self._started()
                return self.instance_id
            await self._drop()
            raise
        await self._started()
        return started

    async def _started(self) -> None:
        """The key's record notes that its send started: a retry once the send's history is
        purged answers that send, and never starts it again (best effort: logged)."""
        if self.claim is None:
            return
        from sendmail import services

        try:
            await asyncio.to_thread(services.idempotency().mark_started, self.claim)
        except Exception:
            logger.warning("send %s: its key was not marked started", self.instance_id)

    async def _drop(self) -> None:
        from sendmail import services

        if self.claim is not None:
            await asyncio.to_thread(services.idempotency().release, self.claim)
        if self.reserved:
            await asyncio.to_thread(services.reservations().release, self.instance_id)
        if self.secret_stored:
            await asyncio.to_thread(services.secrets().delete, self.instance_id)
        # Best effort: a list and a record nobody will send are only storage. Not under an
        # Idempotency-Key: a retry that took the key over may have started this very id.
        if self.send_stored and self.claim is None:
            from sendmail.sending.lists import delete_send

            try:
                await asyncio.to_thread(delete_send, services.blobs(), self.instance_id)
                await asyncio.to_thread(services.sends().delete, self.instance_id)
            except Exception:
                logger.warning("send %s: its stored list was not deleted", self.instance_id)


def _reserve(instance_id: str, recipients: int, quota: Any) -> bool:
    """Reserve, or raise 429; a reservation store that fails admits the send (logged): SES
    still refuses what is over its quota, per recipient."""
    from sendmail import services
    from sendmail.admission import idempotency
    from sendmail.contract.errors import QuotaExceeded

    try:
        services.reservations().reserve(
            instance_id,
            recipients,
            quota.max_24_hour_send,
            quota.sent_last_24_hours,
            idempotency.now(),
        )
    except QuotaExceeded:
        raise
    except Exception:
        logger.warning("the quota reservation could not be made; admitting", exc_info=True)
        return False
    return True


async def _accepted(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    instance_id: str,
    kind: str,
    total: int,
) -> func.HttpResponse:
    """202 with where to poll — or v1's synchronous answer if the caller waits and it finishes.

    The send has started: from here on nothing may answer as if it had not (a caller told
    "500, try again" would send twice), so a failure while waiting falls back to the 202.
    """
    from sendmail.contract.api_models import Accepted

    location = status_url(req, instance_id)
    wait = preferred_wait(req)
    if wait:
        try:
            status = await _wait_for_finish(client, instance_id, wait)
        except Exception:  # the send runs; only the wait failed
            logger.warning(
                "send %s: waiting for it failed; answering 202", instance_id, exc_info=True
            )
            status = None
        if status is not None and status.runtime_status is not None:
            try:
                finished = await asyncio.to_thread(
                    _finished_answer, req, instance_id, status, wait, location
                )
            except Exception:  # the send ran; only reading its results failed
                logger.warning("send %s: its results unreadable; answering 202", instance_id)
                finished = None
            if finished is not None:
                return finished
    body = Accepted(
        id=instance_id, kind=kind, runtimeStatus="Pending", total=total, statusUrl=location
    )
    return json_response(
        body.model_dump(mode="json"),
        202,
        {"Location": location, **retry_after(POLL_AFTER_SECONDS)},
    )


def _finished_answer(
    req: func.HttpRequest,
    instance_id: str,
    status: DurableOrchestrationStatus,
    wait: int,
    location: str,
) -> func.HttpResponse | None:
    """v1's answer for a send that finished while the caller waited; None if still running.

    Completed with at least one message sent: ``200 {"messageIds", "failures", "id"}`` (inline
    up to ``SENDMAIL_STATUS_INLINE_RECIPIENTS`` recipients; above, empty lists and
    ``recipientsUrl``). Completed with nothing sent: the envelope, as v1 answered a failed send —
    403 when the SMTP server refused the login (the caller's credentials), 500 otherwise.
    Failed or terminated: 500. Every such answer carries ``Location`` so the per-recipient
    details stay reachable. Blocking reads: call it on a worker thread.
    """
    from sendmail.contract.api_models import SendResult
    from sendmail.contract.errors import envelope
    from sendmail.contract.models import USER_SEND_MAX_RECIPIENTS
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.jobs import SendOutcome

    runtime = status.runtime_status.value if status.runtime_status else None
    if runtime not in FINISHED_STATUSES:
        return None
    path = request_path(req)
    headers = {"Location": location, "Preference-Applied": f"wait={wait}"}
    output = as_json_object(status.output) if runtime == "Completed" else None
    if output is None:
        message = f"The send {instance_id} ended as {runtime}; see {location} for details."
        return json_response(envelope(500, message, path), 500, headers)
    outcome = SendOutcome.model_validate(output)
    record = _record(instance_id)
    inline = _inline_results(record, finished=True) if record is not None else None
    if outcome.sent == 0 and outcome.failed and not outcome.canceled:
        # Every recipient's code decides 403 (all refused logins) — read whatever the inline
        # limit, for a send small enough (a user-send has at most 100 recipients).
        failures = inline[1] if inline is not None else []
        if inline is None and record is not None and record.total <= USER_SEND_MAX_RECIPIENTS:
            failures = _inline_results(record, finished=True, limit=record.total)[1]
        if failures and {f["code"] for f in failures} == {FailureCode.SMTP_AUTH_FAILED.value}:
            return json_response(envelope(403, failures[0]["message"], path), 403, headers)
        first = _first_failure(record) if record is not None else None
        reason = f" ({first['code']}: {first['message']})" if first is not None else ""
        message = (
            f"None of the {outcome.total} recipients could be sent{reason}; "
            f"see {location} for each recipient."
        )
        return json_response(envelope(500, message, path), 500, headers)
    body = SendResult.model_validate(
        {
            "id": instance_id,
            "messageIds": inline[0] if inline is not None else [],
            "failures": inline[1] if inline is not None else [],
            "recipientsUrl": None if inline is not None else recipients_url(req, instance_id),
        }
    )
    return json_response(
        body.model_dump(mode="json", exclude_none=True),
        200,
        {**headers, "Content-Location": location},
    )


def _record(instance_id: str) -> "SendRecord | None":
    from sendmail import services

    return services.sends().get(instance_id)


@overload
def _inline_results(
    record: "SendRecord", *, finished: bool
) -> tuple[list[str], list[dict[str, str]]] | None: ...
@overload
def _inline_results(
    record: "SendRecord", *, finished: bool, limit: int
) -> tuple[list[str], list[dict[str, str]]]: ...
def _inline_results(
    record: "SendRecord", *, finished: bool, limit: int | None = None
) -> tuple[list[str], list[dict[str, str]]] | None:
    """v1's ``messageIds`` (in recipient order) and ``failures`` of a send of up to ``limit``
    (``SENDMAIL_STATUS_INLINE_RECIPIENTS`` by default) recipients, from the ledger and the
    stored list; None for a larger send."""
    from sendmail import services
    from sendmail.sending.lists import stored_send
    from sendmail.sending.recipients import outcomes

    most = limit if limit is not None else _inline_limit()
    if record.total > most:
        return None
    message_ids: list[str] = []
    failures: list[dict[str, str]] = []
    stored = stored_send(services.blobs(), record.list_ref)
    for outcome in outcomes(record, services.ledger(), stored, finished=finished):
        if outcome.message_id is not None:
            message_ids.append(outcome.message_id)
        elif outcome.status in ("failed", "canceled"):
            failures.append(
                {
                    "recipient": outcome.email,
                    "code": outcome.code or "",
                    "message": outcome.message or "",
                }
            )
    return message_ids, failures


def _inline_limit() -> int:
    from sendmail.platform.settings import get_settings

    return get_settings().SENDMAIL_STATUS_INLINE_RECIPIENTS


def _first_failure(record: "SendRecord") -> dict[str, str] | None:
    from sendmail import services
    from sendmail.sending.lists import stored_send
    from sendmail.sending.recipients import page

    stored = stored_send(services.blobs(), record.list_ref)
    found = page(record, services.ledger(), stored, limit=1, status="failed", finished=True)
    return found.recipients[0].to_json() if found.recipients else None


def recipients_url(req: func.HttpRequest, instance_id: str) -> str:
    return url_for(req, f"/api/v1/emails/{instance_id}/recipients")


async def _wait_for_finish(
    client: df.DurableOrchestrationClient, instance_id: str, seconds: int
) -> DurableOrchestrationStatus | None:
    deadline = time.monotonic() + seconds
    delay = 0.1
    status: DurableOrchestrationStatus | None = None
    while True:
        status = await read_status(client, instance_id)
        if status.runtime_status is not None and status.runtime_status.value in FINISHED_STATUSES:
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return status
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)


@bp.function_name("email_status")
@bp.route(route=STATUS_ROUTE, methods=["GET"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Where a send is. Reads the parent's status (no input; its output is counts), each
    lane's while it runs (custom status counts; a lane's output is counts too), and, for a
    finished send of up to ``SENDMAIL_STATUS_INLINE_RECIPIENTS``, v1's inline results from the
    ledger — never anything that grows with the send beyond that."""
    from sendmail.contract.api_models import EmailStatus
    from sendmail.contract.errors import NotFound
    from sendmail.platform.tables import TableUnavailable

    instance_id = req.route_params.get("id", "")
    status = await read_status(client, instance_id) if _plausible_id(instance_id) else None
    kind = KIND_BY_ORCHESTRATOR.get(status.name or "") if status is not None else None
    if status is None or status.runtime_status is None or kind is None:
        raise NotFound(f"No send with id {instance_id!r} exists.")
    runtime = status.runtime_status.value
    output = as_json_object(status.output) if runtime == "Completed" else None
    custom = as_json_object(status.custom_status) or {}
    try:
        record = await asyncio.to_thread(_record, instance_id)
    except TableUnavailable:  # a running send's counts need only Durable: answer without it
        logger.warning("send %s: its record is unreadable", instance_id, exc_info=True)
        if output is not None and int(output.get("total") or 0) <= _inline_limit():
            raise  # v1's inline results cannot be read: not an answer that looks like none
        record = None
    if record is not None and record.purging is not None:  # retention is deleting it
        raise NotFound(f"No send with id {instance_id!r} exists.")
    if output is not None:
        progress = {k: int(output.get(k) or 0) for k in ("total", "sent", "failed", "canceled")}
        progress["pending"] = 0
    elif custom.get("total") is None:  # before the first episode: the record knows the total
        total = record.total if record is not None else 0
        progress = {"total": total, "sent": 0, "failed": 0, "pending": 0, "canceled": 0}
    else:
        progress = await _running_progress(client, instance_id, custom)
    inline = None
    if output is not None and record is not None:
        inline = await asyncio.to_thread(_inline_results, record, finished=True)
    delivery = await _delivery_counts(instance_id) if kind == "ses" else None
    scheduled_at = record.scheduled_at if record is not None else None
    body = EmailStatus.model_validate(
        {
            "id": instance_id,
            "kind": kind,
            "state": _state(runtime, custom, record),
            "scheduledAt": _iso(scheduled_at),
            "runtimeStatus": runtime,
            "createdTime": _iso(status.created_time),
            "lastUpdatedTime": _iso(status.last_updated_time),
            "progress": progress,
            "messageIds": inline[0] if inline is not None else [],
            "failures": inline[1] if inline is not None else [],
            "recipientsUrl": recipients_url(req, instance_id) if record is not None else None,
            "error": (
                f"The send ended as {runtime} before every recipient was attempted."
                if runtime in FINISHED_STATUSES - {"Completed"}
                else None
            ),
            "delivery": delivery,
            "metadata": dict(record.metadata) if record is not None and record.metadata else None,
        }
    )
    done = runtime in FINISHED_STATUSES
    return json_response(
        body.model_dump(mode="json", exclude_none=True),
        200 if done else 202,
        {} if done else retry_after(POLL_AFTER_SECONDS),
    )


@bp.function_name("email_recipients")
@bp.route(route=RECIPIENTS_ROUTE, methods=["GET"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_recipients(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Every recipient of a send with its outcome, in request order, a page at a time
    (sendmail/sending/recipients.py): any size, the same cost per page."""
    from sendmail import services
    from sendmail.contract.api_models import RecipientsPage
    from sendmail.contract.errors import NotFound, ValidationFailed
    from sendmail.sending.lists import stored_send
    from sendmail.sending.recipients import STATUSES, page

    instance_id = req.route_params.get("id", "")
    cursor = req.params.get("cursor")
    status_text = req.params.get("status")
    problems: list[str] = []
    limit = page_limit(req, DEFAULT_RECIPIENTS_PAGE, MAX_RECIPIENTS_PAGE, problems)
    wanted = next((s for s in STATUSES if s == status_text), None)
    if status_text is not None and wanted is None:
        problems.append(f"status must be one of {', '.join(STATUSES)}")
    if cursor is not None and not cursor:
        problems.append("cursor must be a nextCursor this service gave")
    if problems:
        raise ValidationFailed(problems)
    status = await read_status(client, instance_id) if _plausible_id(instance_id) else None
    kind = KIND_BY_ORCHESTRATOR.get(status.name or "") if status is not None else None
    record = await asyncio.to_thread(_record, instance_id) if kind is not None else None
    if status is None or status.runtime_status is None or record is None or record.purging:
        raise NotFound(f"No send with id {instance_id!r} exists.")
    finished = status.runtime_status.value in FINISHED_STATUSES
    stored = stored_send(services.blobs(), record.list_ref)
    try:
        found = await asyncio.to_thread(
            functools.partial(
                page,
                record,
                services.ledger(),
                stored,
                limit=limit,
                cursor=cursor,
                status=wanted,
                finished=finished,
            )
        )
    except ValueError as e:
        raise ValidationFailed("cursor must be a nextCursor this service gave") from e
    body = RecipientsPage.model_validate(
        {
            "id": instance_id,
            "recipients": [r.to_json() for r in found.recipients],
            "nextCursor": found.cursor,
        }
    )
    return json_response(body.model_dump(mode="json", exclude_none=True))


async def _delivery_counts(instance_id: str) -> dict[str, int] | None:
    """What SES reported for the send so far (its SNS events); None if the store cannot be
    read: the status is still answered, without the counts, and the failure logged."""
    from sendmail import services
    from sendmail.platform.tables import TableUnavailable

    try:
        counts = await asyncio.to_thread(services.event_store().counts, instance_id)
    except TableUnavailable:
        logger.warning("send %s: delivery counts unavailable", instance_id, exc_info=True)
        return None
    return counts.to_json()


async def _running_progress(
    client: df.DurableOrchestrationClient, instance_id: str, custom: dict[str, Any]
) -> dict[str, int]:
    """A running send's counts: the sum of its lanes' own progress (each lane publishes its
    share as it goes; the parent only learns of a lane's results when the lane ends)."""
    from orchestrators.lanes import lane_instance_id

    keys = ("total", "sent", "failed", "pending", "canceled")
    counts = {k: int(custom.get(k) or 0) for k in keys}
    lanes = int(custom.get("lanes") or 0)
    if lanes:
        statuses = await asyncio.gather(
            *(read_status(client, lane_instance_id(instance_id, n)) for n in range(lanes)),
            return_exceptions=True,
        )
        failed = [s for s in statuses if isinstance(s, BaseException)]
        if failed:  # the parent's counts (the lanes' only once they end) rather than a 500
            logger.warning("send %s: %d lane statuses unreadable", instance_id, len(failed))
            return counts
        for key in keys[1:]:
            counts[key] = sum(
                int((as_json_object(s.custom_status) or {}).get(key) or 0)
                for s in statuses
                if isinstance(s, DurableOrchestrationStatus)
            )
    return counts


async def read_status(
    client: df.DurableOrchestrationClient, instance_id: str, *, show_input: bool = False
) -> DurableOrchestrationStatus:
    """``client.get_status`` with ``showInput`` always sent.

    The SDK leaves ``showInput=false`` out of the query (``RpcManagementOptions._add_arg`` skips
    falsy values) and the extension then defaults it to true (``HttpApiHandler``: "showInput =
    true" when absent), so every poll of a running send would read its whole input (50,000
    addresses are about 1.3 MB) and each lane's. The request is the SDK's own, plus the flag.
    """
    from azure.durable_functions.models.RpcManagementOptions import RpcManagementOptions

    options = RpcManagementOptions(instance_id=instance_id, show_input=show_input)
    url = options.to_url(client._orchestration_bindings.rpc_base_url)
    if not show_input:
        url += ("&" if "?" in url else "?") + "showInput=false"
    code, body = await client._get_async_request(url)
    if code not in (200, 202, 400, 404, 500):
        raise RuntimeError(f"the Durable status API answered {code} for {instance_id}")
    return DurableOrchestrationStatus.from_json(body if isinstance(body, dict) else {})


def _state(runtime: str, custom: dict[str, Any], record: "SendRecord | None") -> str:
    """The status route's ``state``: ``canceled`` and ``paused`` as the record says (a cancel
    shows at once, its counts are final once the orchestration ended), ``scheduled`` while the
    orchestration waits for its time (its custom status says so; before its first episode, the
    record's time is still ahead), else from the runtime status."""
    control = record.control if record is not None else "running"
    if runtime == "Completed":
        return "canceled" if control == "canceled" else "completed"
    if runtime in FINISHED_STATUSES:
        return "failed"
    if control != "running":
        return control
    if custom.get("state") == "scheduled":
        return "scheduled"
    scheduled_at = record.scheduled_at if record is not None else None
    if not custom and scheduled_at is not None and scheduled_at > datetime.now(UTC):
        return "scheduled"
    return "running"


def _plausible_id(instance_id: str) -> bool:
    return 0 < len(instance_id) <= 100 and all(c.isalnum() or c in "-_" for c in instance_id)


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    text: str = moment.isoformat() if hasattr(moment, "isoformat") else str(moment)
    return text.replace("+00:00", "Z")
