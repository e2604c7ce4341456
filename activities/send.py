"""The activities: one SES batch, one SMTP connection, failing what a batch left, finishing a send.

Each validates its JSON input, reads its slice of the send's stored list and the content
(:mod:`sendmail.sending.lists`: they are not in the input), runs the batch through
:func:`sendmail.sending.runner.run_batch` (which consults the send ledger so a retried activity
never re-sends what was already sent, and records every recipient's outcome there) and returns
counts (:class:`~sendmail.sending.jobs.BatchTally`). Expected failures are per-recipient outcomes;
only the unexpected raises. An SES batch runs for at most
``SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS`` (and never past the send's deadline) and hands back what
SES did not take yet as *pending*: the lane orchestrator schedules it again (see
``orchestrators/lanes.py``). Before an SES batch calls SES, its recipients on the suppression list
are taken out and reported as ``SUPPRESSED`` (:mod:`sendmail.feedback.suppression`); every message
carries the send id as an SES message tag. Both batch activities read the send's control state
before they start and while they send (:mod:`sendmail.sending.control`): paused or canceled,
nothing new starts, and the tally says ``held`` (the lane waits for a resume, or cancels the rest).
"""

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

if TYPE_CHECKING:
    from sendmail.feedback.webhooks.events import EventType
    from sendmail.sending.control import Halt
    from sendmail.sending.jobs import BatchTally
    from sendmail.sending.sends import SendRecord

from activities.names import (
    FAIL_BATCH,
    FINISH_SEND,
    FORGET_SECRET,
    READ_CONTROL,
    RELEASE_QUOTA,
    SEND_FAILED,
    SEND_SES_BATCH,
    SEND_SMTP_BATCH,
    START_SCHEDULED,
)
from sendmail.platform import telemetry

logger = logging.getLogger(__name__)

bp = df.Blueprint()


@bp.function_name(SEND_SES_BATCH)
@bp.activity_trigger(input_name="batch")
def send_ses_batch(batch: dict[str, Any]) -> dict[str, Any]:
    from sendmail import services
    from sendmail.sending.control import Halt, watching
    from sendmail.sending.jobs import SesBatch

    job = SesBatch.model_validate(batch)
    send_id = job.ledgerKey.split(":", 1)[0]
    with (
        telemetry.span("sendmail.batch", send_id, transport="ses", batch=job.ledgerKey),
        watching(services.sends(), send_id) as watch,
    ):
        halt = Halt(watch)
        if halt():  # paused or canceled: nothing read, nothing sent
            return _held(job.ledgerKey, job.count, job.unrecorded, halt)
        tally = _send_ses(job, send_id, halt)
    return _tally_json(tally, halt)


def _send_ses(job: Any, send_id: str, halt: "Halt") -> "BatchTally":
    from sendmail import services
    from sendmail.feedback.ses_events import send_tags
    from sendmail.feedback.suppression import skipping_suppressed
    from sendmail.platform.settings import get_settings
    from sendmail.sending.lists import stored_send
    from sendmail.sending.results import BatchReport
    from sendmail.sending.runner import SendFn, run_batch

    stored = stored_send(services.blobs(), job.listRef)
    mail = stored.mail()
    entries = stored.entries(job.start, job.count)
    recipients = [address for address, _ in entries]
    sender = services.ses_sender()
    settings = get_settings()
    budget = settings.SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS
    if job.deadline is not None:  # never past the send's deadline: pending is decided there
        budget = min(budget, (job.deadline - datetime.now(UTC)).total_seconds())
    # The send id travels as an SES message tag: SES's events find their send by it.
    tags = send_tags(send_id)
    content = _content(mail, send_id, entries)

    def send_to(recipients: Sequence[str], on_sent: Callable[[int, str], None]) -> BatchReport:
        return sender.send(
            mail.sender,
            recipients,
            content,
            on_sent=on_sent,
            max_rate=job.maxRate,
            start_rate=job.startRate,
            time_budget=max(0.0, budget),
            tags=tags,
            halt=halt,
        )

    send: SendFn = send_to
    marketing = mail.category == "marketing"
    # Suppressed recipients never reach SES; marketing mail skips those who unsubscribed, even
    # with the suppression list switched off.
    if settings.SENDMAIL_SUPPRESSION_ENABLED or marketing:
        send = skipping_suppressed(
            send_to,
            services.suppressions(),
            marketing=marketing,
            bounces=settings.SENDMAIL_SUPPRESSION_ENABLED,
        )

    def settled(count: int) -> None:  # the quota reservation: SES counts these from now on
        try:
            services.reservations().settle(send_id, count)
        except Exception:
            logger.warning("send %s: its quota reservation was not settled", send_id, exc_info=True)

    return run_batch(
        services.ledger(),
        job.ledgerKey,
        recipients,
        send,
        settled=settled,
        group_ms=settings.SENDMAIL_LEDGER_GROUP_MS,
        unrecorded=job.unrecorded,
        transport="ses",
    )


def _held(key: str, count: int, unrecorded: dict[int, str], halt: "Halt") -> dict[str, Any]:
    """The tally of a batch that did not start: the send is paused or canceled."""
    from sendmail import services
    from sendmail.sending.runner import held_tally

    stopped = halt.held()
    assert stopped is not None
    tally = held_tally(services.ledger(), key, count, unrecorded, *stopped)
    return tally.model_dump(mode="json", exclude_defaults=True)


def _tally_json(tally: "BatchTally", halt: "Halt") -> dict[str, Any]:
    """The batch's tally; one that stopped with recipients left because the send was paused or
    canceled says so (``held``, with the change that stopped it): the lane then waits for the
    next change, or cancels the rest."""
    stopped = halt.held() if tally.pending else None
    if stopped is not None:
        tally = tally.model_copy(update={"held": stopped[0], "controlSeq": stopped[1]})
    return tally.model_dump(mode="json", exclude_defaults=True)


@bp.function_name(SEND_SMTP_BATCH)
@bp.activity_trigger(input_name="batch")
def send_smtp_batch(batch: dict[str, Any]) -> dict[str, Any]:
    from sendmail import services
    from sendmail.sending.control import Halt, watching
    from sendmail.sending.jobs import SmtpBatch

    job = SmtpBatch.model_validate(batch)
    send_id = job.ledgerKey.split(":", 1)[0]
    with (
        telemetry.span("sendmail.batch", send_id, transport="smtp", batch=job.ledgerKey),
        watching(services.sends(), send_id) as watch,
    ):
        halt = Halt(watch)
        if halt():  # paused or canceled: no password read, no login
            return _held(job.ledgerKey, job.count, job.unrecorded, halt)
        return _tally_json(_send_smtp(job, halt), halt)


def _send_smtp(job: Any, halt: "Halt") -> "BatchTally":
    from sendmail import services
    from sendmail.admission.logins import LoginSession, account_key
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.lists import stored_send
    from sendmail.sending.results import BatchReport
    from sendmail.sending.runner import fail_rest, run_batch
    from sendmail.sending.sealing import SealingError
    from sendmail.sending.secrets import SecretGone

    try:
        password = services.secrets().get(job.secretRef)
    except (SecretGone, SealingError):
        logger.error("smtp batch %s: the password is no longer stored", job.ledgerKey)
        return fail_rest(
            services.ledger(),
            job.ledgerKey,
            job.count,
            FailureCode.SMTP_ERROR,
            "the service no longer holds the password (the send ended, was canceled or expired, "
            "or the sealing key changed); send again",
            job.unrecorded,
            transport="smtp",
        )
    stored = stored_send(services.blobs(), job.listRef)
    mail = stored.mail()
    entries = stored.entries(job.start, job.count)
    recipients = [address for address, _ in entries]
    content = _content(mail, job.ledgerKey.split(":", 1)[0], entries)
    sender = services.smtp_sender()
    # The failed-login limit: one login per password at a time, none with a password refused
    # within the hour (sendmail/admission/logins.py).
    login = LoginSession(
        services.login_guard,
        account_key(job.provider, mail.sender),
        services.sealer().macs(password)[0],
    )
    try:
        tally = run_batch(
            services.ledger(),
            job.ledgerKey,
            recipients,
            lambda todo, on_sent: BatchReport(
                sender.send(
                    job.provider,
                    mail.sender,
                    password,
                    todo,
                    content,
                    on_sent=on_sent,
                    on_login=login.answered,
                    before_login=login.may_try,
                    halt=halt,
                )
            ),
            unrecorded=job.unrecorded,
            transport="smtp",
        )
    finally:
        login.close()
    return tally


def _content(mail: Any, send_id: str, entries: Sequence[tuple[str, dict[str, str]]]) -> Any:
    """What each recipient of the batch gets (sendmail/sending/content.py): the same message
    for all, or one made per recipient from its values (personalised, marketing)."""
    from sendmail import services
    from sendmail.platform.settings import get_settings
    from sendmail.sending.content import MessageMaker

    tokens = services.unsubscribe_tokens() if mail.category == "marketing" else None
    maker = MessageMaker(mail, send_id, get_settings(), tokens)
    if maker.literal:
        return maker.parts("")
    values = {address: variables for address, variables in entries}
    return lambda recipient: maker.parts(recipient, values.get(recipient))


@bp.function_name(FAIL_BATCH)
@bp.activity_trigger(input_name="batch")
def fail_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Fail, with one code, every recipient of a batch that has no outcome in the ledger (the
    deadline passed, an account-level stop, a batch that kept failing); the batch's counts."""
    from sendmail import services
    from sendmail.sending.jobs import FailBatch
    from sendmail.sending.runner import fail_rest

    job = FailBatch.model_validate(batch)
    send_id = job.ledgerKey.split(":", 1)[0]
    with telemetry.span("sendmail.fail_batch", send_id, batch=job.ledgerKey, code=job.code.value):
        tally = fail_rest(
            services.ledger(),
            job.ledgerKey,
            job.count,
            job.code,
            job.message,
            job.unrecorded,
            transport=_transport(send_id),
        )
    logger.warning(
        "batch %s: %d sent, the rest failed as %s", job.ledgerKey, tally.sent, job.code.value
    )
    return tally.model_dump(mode="json", exclude_defaults=True)


@bp.function_name(FINISH_SEND)
@bp.activity_trigger(input_name="send")
def finish_send(send: dict[str, Any]) -> None:
    """The send is over: its record in the sends table gets its counts and time, and the
    ``send.completed`` webhook is queued — ``send.canceled`` for a canceled send
    (sendmail/feedback/webhooks/outbox.py)."""
    from sendmail import services
    from sendmail.feedback.webhooks.events import SendCounts

    send_id = str(send["id"])
    counts = SendCounts(
        total=int(send["sent"]) + int(send["failed"]) + int(send.get("canceled") or 0),
        sent=int(send["sent"]),
        failed=int(send["failed"]),
        canceled=int(send.get("canceled") or 0),
    )
    now = datetime.now(UTC)
    sends = services.sends()
    sends.finish(send_id, counts.sent, counts.failed, now, counts.canceled)
    record = sends.get(send_id)
    canceled = record is not None and record.control == "canceled"
    state = "canceled" if canceled else "completed"
    metadata = dict(record.metadata) if record is not None and record.metadata else None
    _emit_finished(send_id, counts, state, now, metadata)
    telemetry.send_finished(
        telemetry.SendSummary(
            send_id=send_id,
            api=_api(record.kind if record is not None else None),
            state=state,
            total=counts.total,
            sent=counts.sent,
            failed=counts.failed,
            canceled=counts.canceled,
            seconds=_took(record, now),
        ),
        # a scheduled send canceled before its time: no batch counted its recipients
        unsent_canceled=int(send.get("unsettled") or 0),
    )


@bp.function_name(SEND_FAILED)
@bp.activity_trigger(input_name="send")
def send_failed(send: str) -> None:
    """The send's orchestration is failing (an error no step handled): its record is finished
    with the counts its ledger holds — so retention purges it once it is old enough, as any
    finished send — and it is counted as a send ended ``failed`` (``sendmail.sends.finished``;
    the alert on failed sends reads it) and logged. Recipients without an outcome are counted
    in none of the three (they were not sent by this send)."""
    from sendmail import services

    send_id = str(send)
    sends = services.sends()
    record = sends.get(send_id)
    logger.error("send %s failed: its orchestration ended with an error", send_id)
    now = datetime.now(UTC)
    sent = failed = canceled = 0
    if record is not None:
        sent, failed, canceled = _ledger_counts(record)
        if record.finished is None:
            sends.finish(send_id, sent, failed, now, canceled)
        # No batch will settle the rest: counted here, so that pending (queued - sent - failed
        # - canceled) comes back to zero.
        unsettled = record.total - sent - failed - canceled
        telemetry.recipients_settled(record.kind, 0, {telemetry.UNSETTLED: unsettled})
    telemetry.send_finished(
        telemetry.SendSummary(
            send_id=send_id,
            api=_api(record.kind if record is not None else None),
            state="failed",
            total=record.total if record is not None else 0,
            sent=sent,
            failed=failed,
            canceled=canceled,
            seconds=_took(record, now),
        )
    )


def _ledger_counts(record: "SendRecord") -> tuple[int, int, int]:
    """Sent, failed and canceled recipients of a send as its ledger holds them: one partition
    read per batch of its plan (a failing send only: the lanes' tallies count the others)."""
    from sendmail import services
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.jobs import batch_bounds, ledger_key

    ledger = services.ledger()
    sent = failed = canceled = 0
    for first, _ in batch_bounds(record.total, record.lanes, record.batch_size):
        for outcome in ledger.outcomes(ledger_key(record.id, first)).values():
            if outcome.sent:
                sent += 1
            elif outcome.code == FailureCode.CANCELED.value:
                canceled += 1
            else:
                failed += 1
    return sent, failed, canceled


def _took(record: "SendRecord | None", now: datetime) -> float | None:
    """Seconds from the send's start (its admission, or its time for a scheduled one) to now."""
    if record is None:
        return None
    start = max(record.created, record.scheduled_at or record.created)
    return max(0.0, (now - start).total_seconds())


def _api(kind: str | None) -> str:
    """The route a send came through, as the metrics name it: ``aws`` (SES) or ``user``."""
    return "user" if kind == "smtp" else "aws"


def _transport(send_id: str) -> str:
    """The send's transport (``ses`` or ``smtp``: its kind) from its record, read once per
    process and send (a canceled large send fails thousands of batches); ``unknown`` when the
    record cannot be read."""
    try:
        return _kind_of(send_id)
    except Exception:
        return "unknown"


@functools.lru_cache(maxsize=4096)
def _kind_of(send_id: str) -> str:
    """A send's kind, which never changes; raises (and so is not remembered) without a record."""
    from sendmail import services

    record = services.sends().get(send_id)
    if record is None:
        raise LookupError(send_id)
    return record.kind


def _emit_finished(
    send_id: str, counts: Any, state: str, now: datetime, metadata: dict[str, str] | None
) -> None:
    """Queue ``send.completed`` or ``send.canceled`` with the send's ``metadata`` (its id is the
    send's: a re-run of this step queues the same event, which receivers de-duplicate by
    ``webhook-id``). Raises when it cannot be queued."""
    from sendmail import services
    from sendmail.feedback.webhooks.events import send_event
    from sendmail.feedback.webhooks.outbox import emit

    config = services.webhooks()
    kind: EventType = "send.canceled" if state == "canceled" else "send.completed"
    if not config.wants(kind):
        return
    event = send_event(
        kind,
        send_id=send_id,
        timestamp=now,
        state=state,
        metadata=metadata,
        counts=counts,
    )
    emit(config, services.webhook_queue(), event)


@bp.function_name(READ_CONTROL)
@bp.activity_trigger(input_name="send")
def read_control(send: str) -> str:
    """The send's control state (``running``, ``paused``, ``canceled``) from its record: what a
    scheduled send's orchestration woken by the control event goes by (an event only wakes)."""
    from sendmail import services

    record = services.sends().get(str(send))
    return record.control if record is not None else "running"


@bp.function_name(FORGET_SECRET)
@bp.activity_trigger(input_name="ref")
def forget_secret(ref: str) -> None:
    """An SMTP send is over: delete its password, and prune the secret store (expired secrets,
    data keys no secret needs any more: sendmail/sending/secrets.py)."""
    from sendmail import services

    store = services.secrets()
    store.delete(str(ref))
    pruned = store.prune()
    if pruned.secrets or pruned.keys:
        logger.info("secrets pruned: %d expired, %d data keys dropped", pruned.secrets, pruned.keys)


@bp.function_name(START_SCHEDULED)
@bp.activity_trigger(input_name="start")
def start_scheduled(start: dict[str, Any]) -> dict[str, Any]:
    """A scheduled SES send's time has come: read the quota now, reserve the send's recipients
    in it (sendmail/admission/reservations.py) and answer the account's rate to pace at.

    Never refuses: the send was accepted at its request. If the quota no longer covers it, no
    reservation is made (logged) and SES answers the messages past the quota as such
    (``SES_DAILY_QUOTA_EXCEEDED``, recorded per recipient). If SES cannot be read, the rate read
    at the request is used (an empty answer)."""
    from sendmail import services
    from sendmail.admission import idempotency
    from sendmail.contract.errors import QuotaExceeded
    from sendmail.sending.jobs import StartedSchedule

    send_id, total = str(start["id"]), int(start["total"])
    try:
        quota = services.ses_sender().get_quota()
    except Exception:
        logger.warning("scheduled send %s: the quota could not be read", send_id, exc_info=True)
        return StartedSchedule().model_dump(mode="json", exclude_none=True)
    if quota.max_24_hour_send >= 0:
        try:
            services.reservations().reserve(
                send_id,
                total,
                quota.max_24_hour_send,
                quota.sent_last_24_hours,
                idempotency.now(),
            )
        except QuotaExceeded:
            logger.warning(
                "scheduled send %s: %d recipients, more than the 24-hour quota has left; "
                "sending as far as it goes",
                send_id,
                total,
            )
        except Exception:
            logger.warning("scheduled send %s: no reservation made", send_id, exc_info=True)
    rate = quota.max_send_rate if quota.max_send_rate > 0 else None
    return StartedSchedule(maxRate=rate).model_dump(mode="json", exclude_none=True)


@bp.function_name(RELEASE_QUOTA)
@bp.activity_trigger(input_name="send")
def release_quota(send: str) -> None:
    """An SES send is over: free what its quota reservation did not use."""
    from sendmail import services

    services.reservations().release(str(send))
