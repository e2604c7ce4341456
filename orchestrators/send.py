"""The two orchestrations — SES batches and SMTP connections — and the lane they both run.

A send validates its input, splits the recipients into lanes of batches, runs the lanes at once
(:func:`~orchestrators.lanes.run_lanes`: one ``task_all`` of sub-orchestrations, each sending its
batches one after another), keeps the custom status (progress counts only, well under the 16 KB
cap) up to date, and returns the outcome (``messageIds`` in recipient order, per-recipient
``failures`` and the counts). While the lanes run, each lane publishes its own progress; the
status route adds them up (the parent's status says how many lanes there are).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import FORGET_SECRET, RELEASE_QUOTA
from orchestrators.lanes import as_utc, run_lane, run_lanes
from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR

if TYPE_CHECKING:
    from sendmail.contract.vocabulary import Kind
    from sendmail.sending.jobs import LaneJob

logger = logging.getLogger(__name__)

bp = df.Blueprint()


def _gather(
    context: df.DurableOrchestrationContext,
    kind: Kind,
    total: int,
    jobs: list[LaneJob],
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """Run the lanes and assemble the outcome in recipient order."""
    from sendmail.sending.jobs import assemble, progress

    batches = [batch for job in jobs for batch in job.batches]
    start = progress(total, len(batches), [], lanes=len(jobs))
    context.set_custom_status(start.model_dump(mode="json"))
    per_lane = yield from run_lanes(context, jobs)
    results = [result for lane in per_lane for result in lane]
    context.set_custom_status(
        progress(total, len(batches), results, lanes=len(jobs)).model_dump(mode="json")
    )
    slices = [batch.recipients for batch in batches]
    return assemble(kind, slices, results).model_dump(mode="json")


@bp.function_name(SES_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_ses_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    from sendmail.sending.jobs import LaneBatch, LaneJob, SesJob, lane_batch_slices, ledger_key

    job = SesJob.model_validate(context.get_input())
    lanes = lane_batch_slices(job.recipients, job.lanes, job.batchSize)
    deadline = as_utc(context.current_utc_datetime) + timedelta(seconds=job.deadlineSeconds)
    rate = job.maxRate / len(lanes) if job.maxRate else None
    jobs: list[LaneJob] = []
    number = 0
    for lane in lanes:
        batches = []
        for recipients in lane:
            batches.append(
                LaneBatch(ledgerKey=ledger_key(context.instance_id, number), recipients=recipients)
            )
            number += 1
        jobs.append(
            LaneJob(kind="ses", mail=job.mail, batches=batches, maxRate=rate, deadline=deadline)
        )
    outcome = yield from _gather(context, "ses", len(job.recipients), jobs)
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
) -> Generator[TaskBase, Any, dict[str, Any]]:
    from sendmail.sending.jobs import LaneBatch, LaneJob, SmtpJob, ledger_key, split_even

    job = SmtpJob.model_validate(context.get_input())
    jobs = [
        LaneJob(
            kind="smtp",
            mail=job.mail,
            batches=[LaneBatch(ledgerKey=ledger_key(context.instance_id, n), recipients=part)],
            provider=job.provider,
            secretRef=job.secretRef,
            sealedPassword=job.sealedPassword,
        )
        for n, part in enumerate(split_even(job.recipients, job.connections))
    ]
    # The password is needed no more once the lanes are done, however they ended: it is gone
    # within moments of the last message (sendmail/sending/secrets.py). ``except Exception``,
    # not ``finally``: a generator the SDK closes must not yield again.
    try:
        outcome = yield from _gather(context, "smtp", len(job.recipients), jobs)
    except Exception:
        yield from _forget(context, job.secretRef)
        raise
    yield from _forget(context, job.secretRef)
    return outcome


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
) -> Generator[TaskBase, Any, list[dict[str, Any]]]:
    results: list[dict[str, Any]] = yield from run_lane(context)
    return results
