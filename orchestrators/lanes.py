"""Lanes: how a send's batches run on the Durable host — concurrently, and as meant.

Why lanes, and not a sliding window
    On Azure the Python SDK's actions are applied by the Durable extension's shim, which walks
    them in order and awaits each before invoking the next (``ProcessAsyncActionsV2``;
    ``devhost/durable/shim.py`` has the details and runs the same walk locally). A window kept
    full with ``task_any`` yields, after each finished batch, a ``WhenAny`` that holds only the
    one newly scheduled batch; the host then waits for *that* batch before scheduling anything
    after it, and the window collapses to one batch at a time. Combined with
    ``call_activity_with_retry``, the SDK and the host also number tasks differently and results
    land on the wrong batch (azure-functions-durable-python #603). So:

    - the parent splits the recipients evenly over ``lanes`` lanes and yields **one**
      ``task_all`` of the lane sub-orchestrations: one ``WhenAll`` action, every lane started at
      once, and nothing after it until all are done;
    - each lane (:func:`run_lane`) sends its batches **one after another**: every ``yield`` is
      one plain activity or one durable timer, so the walk never waits behind anything but the
      one thing the lane is waiting for;
    - no ``*_with_retry``: an activity that fails unexpectedly is retried explicitly, with a
      timer and a plain ``call_activity`` (safe: the send ledger stops re-sends).

What a lane guarantees for each batch
    A run of the batch activity returns what it sent, what failed for good and what is still
    *pending* (SES throttling or 5xx, or the run's time budget ran out). The lane runs the
    pending recipients again — at once if the run made progress, after a durable timer of
    growing length (15 s, 30 s, ... 5 min) if SES kept refusing (``stalled``) — until the send's
    deadline; only then are they failed, with the code of their last refusal. An activity that
    raises is retried :data:`ACTIVITY_ATTEMPTS` times; after that the ledger says what the batch
    sent (``reconcile_batch``) and the rest is ``BATCH_FAILED`` — or ``DELIVERY_UNKNOWN`` when
    the ledger cannot be read either. No batch can fail its lane, and no lane the send.

Deterministic (replays): no I/O, no clocks but the context's, no randomness.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import RECONCILE_BATCH, SEND_SES_BATCH, SEND_SMTP_BATCH
from orchestrators.names import LANE_ORCHESTRATOR

if TYPE_CHECKING:
    from sendmail.jobs import BatchFailure, BatchResult, LaneBatch, LaneJob

logger = logging.getLogger(__name__)

#: Runs of a batch activity that raised before the batch is reconciled from the ledger.
ACTIVITY_ATTEMPTS = 3
#: Wait before the second run of an activity that raised; the third waits twice as long.
ACTIVITY_RETRY_DELAY = timedelta(seconds=10)
#: Waits after a run in which SES kept refusing: the first, doubled each time, at most.
FIRST_STALL_WAIT = timedelta(seconds=15)
MAX_STALL_WAIT = timedelta(minutes=5)

Steps = Generator[TaskBase, Any, Any]


def lane_instance_id(parent_instance_id: str, lane: int) -> str:
    """The lane's instance id: derived from the parent, so replays and the status route agree."""
    return f"{parent_instance_id}:lane{lane}"


def run_lanes(context: df.DurableOrchestrationContext, jobs: list[LaneJob]) -> Steps:
    """Run every lane at once; returns each lane's batch results (lane order, batch order)."""
    from sendmail.jobs import BatchResult

    tasks = [
        context.call_sub_orchestrator(
            LANE_ORCHESTRATOR,
            job.model_dump(mode="json"),
            lane_instance_id(context.instance_id, n),
        )
        for n, job in enumerate(jobs)
    ]
    try:
        outputs: list[Any] = yield context.task_all(tasks)
    except Exception:
        # A lane cannot fail on its own; if one did (a bug, a host error), keep the others:
        # the task_all failed fast, so wait for each lane in turn (no new action: the host's
        # walk is still on the task_all) and reconcile the failed lane's batches.
        outputs = []
        for job, task in zip(jobs, tasks, strict=True):
            try:
                outputs.append((yield task))
            except Exception:
                if not context.is_replaying:
                    logger.error("instance %s: a lane failed", context.instance_id)
                reconciled = []
                for batch in job.batches:
                    result = yield from _reconcile(context, batch)
                    reconciled.append(result.model_dump(mode="json"))
                outputs.append(reconciled)
    return [[BatchResult.model_validate(r) for r in output] for output in outputs]


def run_lane(context: df.DurableOrchestrationContext) -> Steps:
    """The lane orchestrator's body: its batches one after another (see the module docs)."""
    from sendmail.jobs import LaneJob, progress

    job = LaneJob.model_validate(context.get_input())
    total = sum(len(b.recipients) for b in job.batches)
    done: list[BatchResult] = []
    rate = job.maxRate

    def report(pending: int = 0) -> None:
        status = progress(total, len(job.batches), done, pending=pending)
        context.set_custom_status(status.model_dump(mode="json"))

    report()
    for batch in job.batches:
        result = yield from _send_batch(context, job, batch, rate, report)
        rate = result.rate or rate
        done.append(result)
        report()
    return [r.model_dump(mode="json") for r in done]


def _send_batch(
    context: df.DurableOrchestrationContext,
    job: LaneJob,
    batch: LaneBatch,
    rate: float | None,
    report: Any,
) -> Steps:
    """Run one batch until nothing is pending or the deadline passed; its merged result."""
    from sendmail.jobs import BatchResult

    size = len(batch.recipients)
    message_ids: list[str | None] = [None] * size
    failures: dict[int, BatchFailure] = {}
    pending: list[int] | None = None
    stalls = 0
    while True:
        try:
            output = yield from _call_with_retries(
                context, _activity(job), _activity_input(job, batch, pending, rate)
            )
        except Exception:
            if not context.is_replaying:
                logger.warning(
                    "instance %s: batch %s kept failing; reconciling from the ledger",
                    context.instance_id,
                    batch.ledgerKey,
                )
            result = yield from _reconcile(context, batch)
            result = result.model_copy(update={"pending": []})
        else:
            result = BatchResult.model_validate(output)
        for index, message_id in enumerate(result.messageIds):
            if message_id is not None:
                message_ids[index] = message_id
                failures.pop(index, None)
        failures.update((f.index, f) for f in result.failures if message_ids[f.index] is None)
        rate = result.rate or rate
        if not result.pending:
            break
        now = _utc(context.current_utc_datetime)
        wait = min(MAX_STALL_WAIT, FIRST_STALL_WAIT * 2**stalls) if result.stalled else None
        stalls = stalls + 1 if result.stalled else 0
        if job.deadline is None or now + (wait or timedelta(0)) >= _utc(job.deadline):
            failures.update((p.index, p) for p in result.pending)  # the deadline: final now
            break
        pending = [p.index for p in result.pending]
        report(len(pending))
        if wait is not None:
            yield context.create_timer(now + wait)
    return BatchResult(
        messageIds=message_ids,
        failures=[failures[i] for i in sorted(failures)],
        rate=rate,
    )


def _activity(job: LaneJob) -> str:
    return SEND_SES_BATCH if job.kind == "ses" else SEND_SMTP_BATCH


def _activity_input(
    job: LaneJob, batch: LaneBatch, pending: list[int] | None, rate: float | None
) -> dict[str, Any]:
    from sendmail.jobs import SesBatch, SmtpBatch

    if job.kind == "ses":
        return SesBatch(
            ledgerKey=batch.ledgerKey,
            mail=job.mail,
            recipients=batch.recipients,
            maxRate=job.maxRate,
            startRate=rate,
            pending=pending,
            deadline=job.deadline,
        ).model_dump(mode="json")
    assert job.provider is not None
    assert job.sealedPassword is not None
    return SmtpBatch(
        ledgerKey=batch.ledgerKey,
        mail=job.mail,
        provider=job.provider,
        sealedPassword=job.sealedPassword,
        recipients=batch.recipients,
    ).model_dump(mode="json")


def _call_with_retries(
    context: df.DurableOrchestrationContext, name: str, payload: dict[str, Any]
) -> Steps:
    """A plain activity call, retried on failure after a durable timer (no ``*_with_retry``)."""
    for attempt in range(1, ACTIVITY_ATTEMPTS + 1):
        try:
            return (yield context.call_activity(name, payload))
        except Exception:
            if attempt == ACTIVITY_ATTEMPTS:
                raise
            if not context.is_replaying:
                logger.warning(
                    "instance %s: %s failed (attempt %d); retrying",
                    context.instance_id,
                    name,
                    attempt,
                )
            delay = ACTIVITY_RETRY_DELAY * attempt
            yield context.create_timer(_utc(context.current_utc_datetime) + delay)
    raise AssertionError("unreachable")


def _reconcile(context: df.DurableOrchestrationContext, batch: LaneBatch) -> Steps:
    """What the ledger says a failed batch sent; DELIVERY_UNKNOWN if it cannot say."""
    from sendmail.jobs import BatchResult
    from sendmail.results import FailureCode

    size = len(batch.recipients)
    try:
        output = yield from _call_with_retries(
            context, RECONCILE_BATCH, {"ledgerKey": batch.ledgerKey, "size": size}
        )
    except Exception:
        if not context.is_replaying:
            logger.error(
                "instance %s: batch %s could not be reconciled",
                context.instance_id,
                batch.ledgerKey,
            )
        return BatchResult.all_failed(
            size,
            FailureCode.DELIVERY_UNKNOWN,
            "the batch failed unexpectedly and its send record could not be read: "
            "this recipient may or may not have been sent",
        )
    return BatchResult.model_validate(output)


def _utc(moment: datetime) -> datetime:
    """The SDK's datetimes may be naive (UTC) or aware; compare them as aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
