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

Bounded, whatever the send's size
    Nothing per recipient crosses a lane: its input is a range of the send's stored list
    (``sendmail/sending/lists.py``), each batch activity reads its own slice and records every
    recipient's outcome in the send ledger, and returns counts. A lane keeps running counters
    and, every :data:`GENERATION_BATCHES` batches, starts a new generation with
    ``continue_as_new`` (carrying the next batch, the counters, the pace and an account-level
    stop): the history the host loads and the SDK replays at each episode stays a few batches
    long, so a million recipients cost the same per recipient as ten thousand
    (docs/architecture.md, "Size").

What a lane guarantees for each batch
    A run of the batch activity records what it sent and what failed for good, and returns how
    many are still *pending* (SES throttling or 5xx, or the run's time budget ran out). The
    lane runs the batch again — the activity sends only what has no outcome yet — at once if
    the run made progress, after a durable timer of growing length (15 s, 30 s, ... 5 min) if
    SES kept refusing (``stalled``), until the send's deadline; only then are they failed (the
    ``fail_batch`` activity), with the code of the batch's last refusal. An activity that raises
    is run again after growing timers until the send's deadline (SMTP, which has none:
    :data:`ACTIVITY_ATTEMPTS` runs); after that what the ledger holds as sent stays sent and the
    rest is ``BATCH_FAILED`` — or, when the ledger cannot be written either, counted as failed,
    and shown by the recipients route as ``DELIVERY_UNKNOWN`` once the send is over. The last
    run of a batch starts :data:`LAST_RUN` before the deadline at the latest; a batch whose turn
    comes later is failed without a run. An account-level stop (sending paused, daily quota)
    fails the lane's later batches without calling SES. No batch can fail its lane, and no lane
    the send.

Pause, resume, cancel (sendmail/sending/control.py)
    The batch activities read the send's record and stop starting new calls when it says
    ``paused`` or ``canceled``; their tally says ``held``. Canceled: what the batch did not send
    fails as ``CANCELED`` and so does every later batch of the lane, without a run (the same path
    as an account-level stop). Paused: the lane waits — no activity, no worker — for the event
    of the next control change (``control-{n + 1}`` when the run saw change ``n``:
    :func:`~sendmail.sending.control.control_event`), which the routes raise to every lane, or
    for :data:`PAUSE_RECHECK` (a wake-up the route failed to deliver costs minutes, not the
    send), then continues as new at the same batch, its deadline moved by the time it waited:
    the next run reads the record again and sends, waits again, or cancels.

    Why numbered events and a new generation after each wake: the SDK hands an event that
    arrived before a wait to every later wait of its name in the generation, while the host
    hands it to one (tests/devhost/test_continue_as_new.py); and when the event wins, canceling
    the timer (``isCanceled``) completes the host's ``WhenAny`` at once on the next replay
    (``OutOfProcOrchestrationShim.InvokeAPIFromAction`` cancels the timer's token right after
    creating it), so the walk reaches ``ContinueAsNew`` before the event itself is processed,
    and DTFx carries the event over to the next generation. A generation waits once, and a
    later wait never matches an earlier change's event, buffered or carried.

Deterministic (replays): no I/O, no clocks but the context's, no randomness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import FAIL_BATCH, SEND_SES_BATCH, SEND_SMTP_BATCH
from orchestrators.names import LANE_ORCHESTRATOR

if TYPE_CHECKING:
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.jobs import BatchStop, BatchTally, LaneJob

logger = logging.getLogger(__name__)

#: Runs of an activity that raised, without a deadline (SMTP, fail_batch), before giving up.
ACTIVITY_ATTEMPTS = 3
#: Wait before running an activity that raised again; it doubles with every further run.
ACTIVITY_RETRY_DELAY = timedelta(seconds=10)
#: Batches a lane runs in one generation before it continues as new (its history stays this
#: many batches long; each new generation costs one more episode).
GENERATION_BATCHES = 10
#: The last run of a batch starts at least this long before the send's deadline.
LAST_RUN = timedelta(seconds=30)
#: Waits after a run in which SES kept refusing: the first, doubled each time, at most.
FIRST_STALL_WAIT = timedelta(seconds=15)
MAX_STALL_WAIT = timedelta(minutes=5)
#: A paused lane reads the send's record again after this long even without a wake-up event.
PAUSE_RECHECK = timedelta(minutes=10)

Steps = Generator[TaskBase, Any, Any]


def lane_instance_id(parent_instance_id: str, lane: int) -> str:
    """The lane's instance id: derived from the parent, so replays and the status route agree."""
    return f"{parent_instance_id}:lane{lane}"


def run_lanes(context: df.DurableOrchestrationContext, jobs: list[LaneJob]) -> Steps:
    """Run every lane at once; returns each lane's :class:`LaneTally` (lane order)."""
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.jobs import LaneTally, ledger_key

    tasks = [
        context.call_sub_orchestrator(
            LANE_ORCHESTRATOR,
            job.model_dump(mode="json", exclude_none=True),
            lane_instance_id(context.instance_id, n),
        )
        for n, job in enumerate(jobs)
    ]
    try:
        outputs: list[Any] = yield context.task_all(tasks)
    except Exception:
        # A lane cannot fail on its own; if one did (a bug, a host error), keep the others:
        # the task_all failed fast, so wait for each lane in turn (yielding tasks already
        # scheduled adds no action) and settle the failed lane's batches from the ledger (new
        # activities: the host's walk schedules them once it is past the task_all).
        outputs = []
        for job, task in zip(jobs, tasks, strict=True):
            try:
                outputs.append((yield task))
            except Exception:
                if not context.is_replaying:
                    logger.error("instance %s: a lane failed", context.instance_id)
                sent = failed = canceled = 0
                for start, count in job.batches():
                    tally = yield from _fail(
                        context,
                        ledger_key(job.sendId, start),
                        count,
                        FailureCode.BATCH_FAILED,
                        "the batch failed unexpectedly after retries; not confirmed as sent",
                    )
                    sent, failed = sent + tally.sent, failed + tally.failed
                    canceled += tally.canceled
                lost = LaneTally(
                    sent=sent, failed=failed, canceled=canceled, batches=len(job.batches())
                )
                outputs.append(lost.model_dump())
    return [LaneTally.model_validate(output) for output in outputs]


@dataclass
class _Lane:
    """A lane's running state: what a generation carries to the next."""

    next: int
    sent: int
    failed: int
    canceled: int
    rate: float | None
    stopped: BatchStop | None


def run_lane(context: df.DurableOrchestrationContext) -> Steps:
    """The lane orchestrator's body: its batches one after another (see the module docs);
    a new generation every :data:`GENERATION_BATCHES` batches."""
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.jobs import LaneJob, LaneTally, ledger_key, progress

    job = LaneJob.model_validate(context.get_input())
    batches = job.batches()
    lane = _Lane(
        job.nextBatch, job.sent, job.failed, job.canceled, job.rate or job.maxRate, job.stopped
    )

    def report(batch: BatchTally | None = None) -> None:
        """The lane's counts, and those of the batch waiting for its next run (if any)."""
        status = progress(
            job.end - job.start,
            len(batches),
            lane.sent + (batch.sent if batch is not None else 0),
            lane.failed + (batch.failed if batch is not None else 0),
            lane.next,
            pending=batch.pending if batch is not None else 0,
            canceled=lane.canceled + (batch.canceled if batch is not None else 0),
        )
        context.set_custom_status(status.model_dump(mode="json"))

    def carried(**update: Any) -> dict[str, Any]:
        """The next generation's input: the lane's state now (and ``update``)."""
        state: dict[str, Any] = {
            "nextBatch": lane.next,
            "sent": lane.sent,
            "failed": lane.failed,
            "canceled": lane.canceled,
            "rate": lane.rate,
            "stopped": lane.stopped,
            "unrecorded": {},
        }
        following = job.model_copy(update={**state, **update})
        return following.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    report()
    ran = 0
    unrecorded = job.unrecorded  # of the batch a pause interrupted, if any
    while lane.next < len(batches):
        if ran == GENERATION_BATCHES:
            context.continue_as_new(carried())
            return None
        start, count = batches[lane.next]
        key = ledger_key(job.sendId, start)
        if lane.stopped is not None:  # an account-level stop (or a cancel) holds for the rest
            message = lane.stopped.message
            if lane.stopped.code != FailureCode.CANCELED:
                message = f"Not attempted after an earlier batch: {message}"
            tally = yield from _fail(
                context, key, count, lane.stopped.code, message, unrecorded=unrecorded
            )
        else:
            tally = yield from _send_batch(
                context, job, key, start, count, lane.rate, report, unrecorded
            )
        unrecorded = {}
        lane.rate = tally.rate or lane.rate
        if tally.held == "paused":
            report(tally)
            since = as_utc(context.current_utc_datetime)
            yield from _wait_for_control(context, tally.controlSeq + 1, since + PAUSE_RECHECK)
            waited = as_utc(context.current_utc_datetime) - since
            deadline = as_utc(job.deadline) + waited if job.deadline is not None else None
            context.continue_as_new(carried(deadline=deadline, unrecorded=tally.unrecorded))
            return None
        lane.stopped = lane.stopped or tally.stopped
        lane.sent += tally.sent
        lane.failed += tally.failed
        lane.canceled += tally.canceled
        lane.next += 1
        ran += 1
        report()
    return LaneTally(
        sent=lane.sent, failed=lane.failed, canceled=lane.canceled, batches=len(batches)
    ).model_dump(exclude_defaults=True)


def _wait_for_control(context: df.DurableOrchestrationContext, seq: int, until: datetime) -> Steps:
    """Wait for the event of control change ``seq`` or until ``until``, whichever comes first;
    the timer is canceled when the event wins (an open timer would hold the generation open:
    DTFx completes or continues an orchestration only with no task open)."""
    from sendmail.sending.control import control_event

    wake = context.wait_for_external_event(control_event(seq))
    timer = context.create_timer(until)
    winner = yield context.task_any([wake, timer])
    if winner is wake:
        timer.cancel()


def _send_batch(
    context: df.DurableOrchestrationContext,
    job: LaneJob,
    key: str,
    start: int,
    count: int,
    rate: float | None,
    report: Callable[[BatchTally], None],
    unrecorded: dict[int, str],
) -> Steps:
    """Run one batch until nothing is pending or the deadline passed; its :class:`BatchTally`.
    ``unrecorded``: what earlier runs sent without recording it (only while the ledger fails).
    A run held by a pause returns at once (``held``: the lane waits); one held by a cancel
    fails what is left as ``CANCELED`` and stops the lane's later batches too."""
    from sendmail.contract.vocabulary import FailureCode
    from sendmail.sending.control import CANCELED_MESSAGE
    from sendmail.sending.jobs import BatchStop, BatchTally
    from sendmail.sending.ses_errors import NOT_REACHED, THROTTLED

    if job.deadline is not None and as_utc(context.current_utc_datetime) >= _last_chance(job):
        return (
            yield from _fail(
                context, key, count, NOT_REACHED.code, NOT_REACHED.message, unrecorded=unrecorded
            )
        )
    stopped = None
    stalls = 0
    sent = 0  # what the batch's runs so far say it sent
    while True:
        try:
            payload = _activity_input(job, key, start, count, rate, unrecorded)
            output = yield from _call_with_retries(context, _activity(job), payload, job.deadline)
        except Exception:
            if not context.is_replaying:
                logger.warning(
                    "instance %s: batch %s kept failing; what it did not send fails",
                    context.instance_id,
                    key,
                )
            failed = yield from _fail(
                context,
                key,
                count,
                FailureCode.BATCH_FAILED,
                "the batch failed unexpectedly after retries; not confirmed as sent",
                sent=sent,
                unrecorded=unrecorded,
            )
            return failed.model_copy(update={"rate": rate, "stopped": stopped})
        tally = BatchTally.model_validate(output)
        sent = tally.sent
        unrecorded = tally.unrecorded
        rate = tally.rate or rate
        stopped = stopped or tally.stopped
        if tally.held == "canceled":
            canceled = yield from _fail(
                context,
                key,
                count,
                FailureCode.CANCELED,
                CANCELED_MESSAGE,
                sent=sent,
                unrecorded=unrecorded,
            )
            stop = BatchStop(code=FailureCode.CANCELED, message=CANCELED_MESSAGE)
            return canceled.model_copy(update={"rate": rate, "stopped": stop})
        if not tally.pending or tally.held == "paused":
            return tally.model_copy(update={"rate": rate, "stopped": stopped})
        now = as_utc(context.current_utc_datetime)
        wait = min(MAX_STALL_WAIT, FIRST_STALL_WAIT * 2**stalls) if tally.stalled else None
        stalls = stalls + 1 if tally.stalled else 0
        last_chance = _last_chance(job) if job.deadline is not None else now
        if now >= last_chance:  # the deadline: what is still pending is final now
            final = yield from _fail(
                context,
                key,
                count,
                tally.pendingCode or THROTTLED.code,
                tally.pendingMessage or THROTTLED.message,
                sent=tally.sent,
                unrecorded=unrecorded,
            )
            return final.model_copy(update={"rate": rate, "stopped": stopped})
        report(tally)
        if wait is not None:  # never past the last chance: one more run before the deadline
            yield context.create_timer(min(now + wait, last_chance))


def _last_chance(job: LaneJob) -> datetime:
    """When the last run of a batch starts at the latest (the job has a deadline)."""
    assert job.deadline is not None
    return as_utc(job.deadline) - LAST_RUN


def _activity(job: LaneJob) -> str:
    return SEND_SES_BATCH if job.kind == "ses" else SEND_SMTP_BATCH


def _activity_input(
    job: LaneJob,
    key: str,
    start: int,
    count: int,
    rate: float | None,
    unrecorded: dict[int, str],
) -> dict[str, Any]:
    from sendmail.sending.jobs import SesBatch, SmtpBatch

    if job.kind == "ses":
        return SesBatch(
            ledgerKey=key,
            listRef=job.listRef,
            start=start,
            count=count,
            maxRate=job.maxRate,
            startRate=rate,
            deadline=job.deadline,
            unrecorded=unrecorded,
        ).model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    assert job.provider is not None
    assert job.secretRef is not None
    return SmtpBatch(
        ledgerKey=key,
        listRef=job.listRef,
        start=start,
        count=count,
        provider=job.provider,
        secretRef=job.secretRef,
        unrecorded=unrecorded,
    ).model_dump(mode="json", exclude_defaults=True)


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


def _fail(
    context: df.DurableOrchestrationContext,
    key: str,
    count: int,
    code: FailureCode,
    message: str,
    *,
    sent: int = 0,
    unrecorded: dict[int, str] | None = None,
) -> Steps:
    """Fail, with ``code``, every recipient of the batch without an outcome (an activity: the
    ledger keeps them); its counts. If even that fails, the batch counts as failed but for the
    ``sent`` known so far, and the recipients route says ``DELIVERY_UNKNOWN`` for the rest."""
    from sendmail.sending.jobs import BatchTally, FailBatch

    payload = FailBatch(
        ledgerKey=key, count=count, code=code, message=message, unrecorded=unrecorded or {}
    )
    try:
        output = yield from _call_with_retries(
            context, FAIL_BATCH, payload.model_dump(mode="json", exclude_defaults=True)
        )
    except Exception:
        if not context.is_replaying:
            logger.error(
                "instance %s: batch %s could not be settled in the ledger",
                context.instance_id,
                key,
            )
        return BatchTally(sent=sent, failed=count - sent)
    return BatchTally.model_validate(output)


def as_utc(moment: datetime) -> datetime:
    """The SDK's datetimes may be naive (UTC) or aware; compare them as aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
