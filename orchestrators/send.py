"""The two orchestrations — SES batches and SMTP connections — and the lane they both run.

A send validates its input (a reference to the stored list and content, counts and the plan —
never the recipients), splits the list into lane ranges, runs the lanes at once
(:func:`~orchestrators.lanes.run_lanes`: one ``task_all`` of sub-orchestrations, each sending its
batches one after another), keeps the custom status (progress counts only) up to date, notes the
end in the sends table and returns the counts. Every recipient's outcome is in the send ledger
(the recipients route reads it); nothing in this orchestration grows with the send. While the
lanes run, each lane publishes its own progress; the status route adds them up (the parent's
status says how many lanes there are).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import (
    FINISH_SEND,
    FORGET_SECRET,
    READ_CONTROL,
    RELEASE_QUOTA,
    SEND_FAILED,
    START_SCHEDULED,
)
from orchestrators.lanes import as_utc, run_lane, run_lanes
from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR

if TYPE_CHECKING:
    from sendmail.contract.vocabulary import Kind
    from sendmail.sending.jobs import LaneJob

logger = logging.getLogger(__name__)

bp = df.Blueprint()

#: What waiting for a send's time ended with: no wait (``now``), the time came (``waited``),
#: canceled, or a new generation waits on (``continued``).
Waited = Literal["now", "waited", "canceled", "continued"]
#: The longest a scheduled send's orchestration waits in one generation (see
#: :func:`_wait_for_schedule`).
SCHEDULE_STEP = timedelta(days=3)


def _gather(
    context: df.DurableOrchestrationContext, kind: Kind, total: int, jobs: list[LaneJob]
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """Run the lanes, add up their counts, note the end in the sends table; the outcome."""
    from sendmail.sending.jobs import progress

    batches = sum(len(job.batches()) for job in jobs)
    context.set_custom_status(progress(total, batches, 0, 0, 0, lanes=len(jobs)).model_dump())
    tallies = yield from run_lanes(context, jobs)
    sent = sum(t.sent for t in tallies)
    failed = sum(t.failed for t in tallies)
    canceled = sum(t.canceled for t in tallies)
    context.set_custom_status(
        progress(
            total, batches, sent, failed, batches, canceled=canceled, lanes=len(jobs)
        ).model_dump()
    )
    return (yield from _finish(context, kind, total, sent, failed, canceled))


def _finish(
    context: df.DurableOrchestrationContext,
    kind: Kind,
    total: int,
    sent: int,
    failed: int,
    canceled: int,
    unsettled: int = 0,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """Note the end in the sends table (and queue its webhook); the orchestration's output.
    ``unsettled``: recipients canceled that no batch settled (the metrics count them there)."""
    from sendmail.sending.jobs import SendOutcome

    counts = {"sent": sent, "failed": failed, "canceled": canceled}
    finish: dict[str, Any] = {"id": context.instance_id, **counts}
    if unsettled:
        finish["unsettled"] = unsettled
    try:  # the record's counts and end; the status route does not depend on them
        yield context.call_activity(FINISH_SEND, finish)
    except Exception:
        if not context.is_replaying:
            logger.warning("send %s: its record was not finished", context.instance_id)
    outcome = SendOutcome(kind=kind, total=total, **counts)
    return outcome.model_dump(mode="json", exclude_defaults=True)


def _counting_failure(
    context: df.DurableOrchestrationContext,
    body: Generator[TaskBase, Any, dict[str, Any] | None],
) -> Generator[TaskBase, Any, dict[str, Any] | None]:
    """Run a send's orchestration; one that fails with an error no step handled is counted and
    logged by an activity first (an orchestrator's own code replays: it never counts). Best
    effort: the error that fails the send is the one raised, not this step's."""
    try:
        return (yield from body)
    except Exception:
        try:
            yield context.call_activity(SEND_FAILED, context.instance_id)
        except Exception:
            if not context.is_replaying:
                logger.warning("send %s: its failure was not counted", context.instance_id)
        raise


def _canceled_before_start(
    context: df.DurableOrchestrationContext, kind: Kind, total: int
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """A scheduled send canceled before its time: nothing was sent, every recipient is
    canceled (the recipients route says so from the record: no ledger row is written)."""
    from sendmail.sending.jobs import progress

    context.set_custom_status(progress(total, 0, 0, 0, 0, canceled=total).model_dump())
    return (yield from _finish(context, kind, total, 0, 0, total, unsettled=total))


@bp.function_name(SES_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_ses_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any] | None]:
    return (yield from _counting_failure(context, _send_ses(context)))


def _send_ses(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any] | None]:
    from sendmail.sending.jobs import LaneJob, SesJob, StartedSchedule, lane_ranges

    job = SesJob.model_validate(context.get_input())
    max_rate = job.maxRate
    waited = yield from _wait_for_schedule(context, job.scheduledAt)
    if waited == "continued":
        return None
    if waited == "canceled":
        return (yield from _canceled_before_start(context, "ses", job.total))
    if waited == "waited":
        started = yield context.call_activity(
            START_SCHEDULED, {"id": context.instance_id, "total": job.total}
        )
        max_rate = StartedSchedule.model_validate(started).maxRate or job.maxRate
    ranges = lane_ranges(job.total, job.lanes)
    deadline = as_utc(context.current_utc_datetime) + timedelta(seconds=job.deadlineSeconds)
    rate = max_rate / len(ranges) if max_rate else None
    jobs = [
        LaneJob(
            kind="ses",
            sendId=context.instance_id,
            listRef=job.listRef,
            start=start,
            end=end,
            batchSize=job.batchSize,
            maxRate=rate,
            deadline=deadline,
        )
        for start, end in ranges
    ]
    outcome = yield from _gather(context, "ses", job.total, jobs)
    try:  # what the send's quota reservation did not use is free again
        yield context.call_activity(RELEASE_QUOTA, context.instance_id)
    except Exception:  # it expires on its own within 24 hours
        if not context.is_replaying:
            logger.warning("send %s: its quota reservation was not released", context.instance_id)
    return outcome


@bp.function_name(SMTP_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_smtp_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any] | None]:
    return (yield from _counting_failure(context, _send_smtp(context)))


def _send_smtp(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any] | None]:
    from sendmail.sending.jobs import LaneJob, SmtpJob, lane_ranges, smtp_plan

    job = SmtpJob.model_validate(context.get_input())
    waited = yield from _wait_for_schedule(context, job.scheduledAt)
    if waited == "continued":
        return None
    if waited == "canceled":
        outcome = yield from _canceled_before_start(context, "smtp", job.total)
        yield from _forget(context, job.secretRef)
        return outcome
    lanes, size = smtp_plan(job.total, job.connections)
    jobs = [
        LaneJob(
            kind="smtp",
            sendId=context.instance_id,
            listRef=job.listRef,
            start=start,
            end=end,
            batchSize=size,
            provider=job.provider,
            secretRef=job.secretRef,
        )
        for start, end in lane_ranges(job.total, lanes)
    ]
    # The password is needed no more once the lanes are done, however they ended: it is gone
    # within moments of the last message (sendmail/sending/secrets.py). ``except Exception``,
    # not ``finally``: a generator the SDK closes must not yield again.
    try:
        outcome = yield from _gather(context, "smtp", job.total, jobs)
    except Exception:
        yield from _forget(context, job.secretRef)
        raise
    yield from _forget(context, job.secretRef)
    return outcome


def _wait_for_schedule(
    context: df.DurableOrchestrationContext, scheduled_at: datetime | None
) -> Generator[TaskBase, Any, Waited]:
    """Wait for the send's ``scheduledAt`` (if it is still ahead) on a durable timer, or for the
    event of a cancel, whichever comes first. Until then the custom status says
    ``scheduled``.

    One generation waits at most :data:`SCHEDULE_STEP`, then continues as new (``continued``)
    and the next waits on. The step is the host's ``longRunningTimerIntervalDuration`` (3 days)
    and below its ``maximumShortTimerDuration`` (6 days), so the SDK makes a plain timer, never
    a ``LongTimerTask``: that one schedules its later 3-day timers as actions of their own,
    outside the ``task_any``, and the host's walk (``ProcessAsyncActionsV2``, which awaits each
    action in order) would then wait for such a timer before anything the SDK did after the
    event — a cancel would take effect only at the end of a 3-day step. A new generation also
    gives each wait for the event a fresh start (the SDK hands an event that arrived before a
    wait to every later wait of its name). Woken by the event, the parent reads the record
    (events only wake): ``canceled``, or a new generation that waits on."""
    from sendmail.sending.control import CANCEL_EVENT

    now = as_utc(context.current_utc_datetime)
    if scheduled_at is None or now >= scheduled_at:
        return "now"
    when = scheduled_at.astimezone(UTC)
    context.set_custom_status({"state": "scheduled", "scheduledAt": when.isoformat()})
    until = min(when, now + SCHEDULE_STEP)
    timer = context.create_timer(until)
    wake = context.wait_for_external_event(CANCEL_EVENT)
    winner = yield context.task_any([timer, wake])
    if winner is wake:
        timer.cancel()
        try:
            state = yield context.call_activity(READ_CONTROL, context.instance_id)
        except Exception:  # unread: the route raises this event only after writing the cancel
            state = "canceled"
        if state == "canceled":
            return "canceled"
    elif until >= when:
        return "waited"
    context.continue_as_new(context.get_input())
    return "continued"


def _forget(
    context: df.DurableOrchestrationContext, ref: str | None
) -> Generator[TaskBase, Any, None]:
    """Delete the send's stored password (an activity); if that fails, it expires on its own."""
    if ref is None:
        return  # a send started before the secret store: nothing stored
    try:
        yield context.call_activity(FORGET_SECRET, ref)
    except Exception:
        if not context.is_replaying:
            logger.warning("send %s: its password was not deleted", context.instance_id)


@bp.function_name(LANE_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_lane_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any] | None]:
    tally: dict[str, Any] | None = yield from run_lane(context)
    return tally
