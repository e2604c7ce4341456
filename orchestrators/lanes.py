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
    raises is run again after growing timers until the send's deadline (SMTP, which has none:
    :data:`ACTIVITY_ATTEMPTS` runs); after that the ledger says what the batch sent
    (``reconcile_batch``) and the rest is ``BATCH_FAILED`` — or ``DELIVERY_UNKNOWN`` when the
    ledger cannot be read either. The last run of a batch starts :data:`LAST_RUN` before the
    deadline at the latest; a batch whose turn comes later is failed without a run. An
    account-level stop (sending paused, daily quota) fails the lane's later batches without
    calling SES. No batch can fail its lane, and no lane the send.

Deterministic (replays): no I/O, no clocks but the context's, no randomness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import RECONCILE_BATCH, SEND_SES_BATCH, SEND_SMTP_BATCH
from orchestrators.names import LANE_ORCHESTRATOR

if TYPE_CHECKING:
    from sendmail.sending.jobs import BatchFailure, BatchResult, LaneBatch, LaneJob

logger = logging.getLogger(__name__)

#: Runs of an activity that raised, without a deadline (SMTP, reconcile), before giving up.
ACTIVITY_ATTEMPTS = 3
#: Wait before running an activity that raised again; it doubles with every further run.
ACTIVITY_RETRY_DELAY = timedelta(seconds=10)
#: The last run of a batch starts at least this long before the send's deadline.
LAST_RUN = timedelta(seconds=30)
#: Waits after a run in which SES kept refusing: the first, doubled each time, at most.
FIRST_STALL_WAIT = timedelta(seconds=15)
MAX_STALL_WAIT = timedelta(minutes=5)

Steps = Generator[TaskBase, Any, Any]


def lane_instance_id(parent_instance_id: str, lane: int) -> str:
    """The lane's instance id: derived from the parent, so replays and the status route agree."""
    return f"{parent_instance_id}:lane{lane}"


def run_lanes(context: df.DurableOrchestrationContext, jobs: list[LaneJob]) -> Steps:
    """Run every lane at once; returns each lane's batch results (lane order, batch order)."""
    from sendmail.sending.jobs import BatchResult

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
        # the task_all failed fast, so wait for each lane in turn (yielding tasks already
        # scheduled adds no action) and reconcile the failed lane's batches (new activities:
        # the host's walk schedules them once it is past the task_all, i.e. all lanes ended).
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
    from sendmail.sending.jobs import BatchResult, LaneJob, progress

    job = LaneJob.model_validate(context.get_input())
    total = sum(len(b.recipients) for b in job.batches)
    done: list[BatchResult] = []
    rate = job.maxRate

    def report(pending: int = 0) -> None:
        status = progress(total, len(job.batches), done, pending=pending)
        context.set_custom_status(status.model_dump(mode="json"))

    report()
    for batch in job.batches:
        stop = next((r.stopped for r in done if r.stopped is not None), None)
        if stop is not None:  # an account-level stop holds for the lane's later batches too
            message = f"Not attempted after an earlier batch: {stop.message}"
            done.append(BatchResult.all_failed(len(batch.recipients), stop.code, message))
            continue
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
    report: Callable[[int], None],
) -> Steps:
    """Run one batch until nothing is pending or the deadline passed; its merged result."""
    from sendmail.sending.jobs import BatchResult
    from sendmail.sending.ses_errors import NOT_REACHED

    size = len(batch.recipients)
    if job.deadline is not None and as_utc(context.current_utc_datetime) >= _last_chance(job):
        return BatchResult.all_failed(size, NOT_REACHED.code, NOT_REACHED.message)
    message_ids: list[str | None] = [None] * size
    failures: dict[int, BatchFailure] = {}
    pending: list[int] | None = None
    stopped = None
    stalls = 0
    while True:
        try:
            output = yield from _call_with_retries(
                context, _activity(job), _activity_input(job, batch, pending, rate), job.deadline
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
        for failure in result.failures:  # an earlier, more specific failure is kept
            if message_ids[failure.index] is None:
                failures.setdefault(failure.index, failure)
        rate = result.rate or rate
        stopped = stopped or result.stopped
        if not result.pending:
            break
        now = as_utc(context.current_utc_datetime)
        wait = min(MAX_STALL_WAIT, FIRST_STALL_WAIT * 2**stalls) if result.stalled else None
        stalls = stalls + 1 if result.stalled else 0
        last_chance = _last_chance(job) if job.deadline is not None else now
        if now >= last_chance:  # the deadline: what is still pending is final now
            failures.update((p.index, p) for p in result.pending)
            break
        pending = [p.index for p in result.pending]
        report(len(pending))
        if wait is not None:  # never past the last chance: one more run before the deadline
            yield context.create_timer(min(now + wait, last_chance))
    return BatchResult(
        messageIds=message_ids,
        failures=[failures[i] for i in sorted(failures)],
        rate=rate,
        stopped=stopped,
    )


def _last_chance(job: LaneJob) -> datetime:
    """When the last run of a batch starts at the latest (the job has a deadline)."""
    assert job.deadline is not None
    return as_utc(job.deadline) - LAST_RUN


def _activity(job: LaneJob) -> str:
    return SEND_SES_BATCH if job.kind == "ses" else SEND_SMTP_BATCH


def _activity_input(
    job: LaneJob, batch: LaneBatch, pending: list[int] | None, rate: float | None
) -> dict[str, Any]:
    from sendmail.sending.jobs import SesBatch, SmtpBatch

    if job.kind == "ses":
        return SesBatch(
            ledgerKey=batch.ledgerKey,
            mail=job.mail,
            recipients=(
                batch.recipients if pending is None else [batch.recipients[i] for i in pending]
            ),
            indices=pending,
            size=len(batch.recipients),
            maxRate=job.maxRate,
            startRate=rate,
            deadline=job.deadline,
        ).model_dump(mode="json")
    assert job.provider is not None
    return SmtpBatch(
        ledgerKey=batch.ledgerKey,
        mail=job.mail,
        provider=job.provider,
        secretRef=job.secretRef,
        sealedPassword=job.sealedPassword,
        recipients=batch.recipients,
    ).model_dump(mode="json", exclude_none=True)


def _call_with_retries(
    context: df.DurableOrchestrationContext,
    name: str,
    payload: dict[str, Any],
    deadline: datetime | None = None,
) -> Steps:
    """A plain activity call, run again after a durable timer when it raises (no
    ``*_with_retry``): until the deadline when there is one (waits doubling from
    :data:`ACTIVITY_RETRY_DELAY` up to :data:`MAX_STALL_WAIT`), else :data:`ACTIVITY_ATTEMPTS`
    runs."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return (yield context.call_activity(name, payload))
        except Exception:
            now = as_utc(context.current_utc_datetime)
            delay = min(MAX_STALL_WAIT, ACTIVITY_RETRY_DELAY * 2 ** (attempt - 1))
            if deadline is None and attempt >= ACTIVITY_ATTEMPTS:
                raise
            if deadline is not None and now + delay >= as_utc(deadline) - LAST_RUN:
                raise
            if not context.is_replaying:
                logger.warning(
                    "instance %s: %s failed (attempt %d); running it again in %s",
                    context.instance_id,
                    name,
                    attempt,
                    delay,
                )
            yield context.create_timer(now + delay)


def _reconcile(context: df.DurableOrchestrationContext, batch: LaneBatch) -> Steps:
    """What the ledger says a failed batch sent; DELIVERY_UNKNOWN if it cannot say."""
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.jobs import BatchResult

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


def as_utc(moment: datetime) -> datetime:
    """The SDK's datetimes may be naive (UTC) or aware; compare them as aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
