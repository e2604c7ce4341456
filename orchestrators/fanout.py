"""The fan-out both orchestrators share: batches as activities, a bounded window in flight.

Deterministic (replays): no I/O, no clocks, no randomness — only the context's own calls. A batch
whose activity fails even after its retries is not lost: the orchestrator asks the ledger (through
the reconcile activity) what that batch did send, and reports the rest as failed; if even the
ledger cannot be read, that batch's recipients are reported as ``DELIVERY_UNKNOWN``. No single
batch can fail the whole send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState

from activities.names import RECONCILE_BATCH

logger = logging.getLogger(__name__)

#: Activity retries for unexpected failures only (expected ones come back as results). Safe to
#: repeat because every batch is guarded by the send ledger. SES throttling is retried inside the
#: sender, not here, so these attempts do not multiply with it for the common case.
ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=3
)


def _unknown(size: int) -> dict[str, Any]:
    from sendmail.jobs import BatchResult
    from sendmail.results import FailureCode

    return BatchResult.all_failed(
        size,
        FailureCode.DELIVERY_UNKNOWN,
        "the batch failed unexpectedly and its send record could not be read: "
        "this recipient may or may not have been sent",
    ).model_dump(mode="json")


def fan_out(
    context: df.DurableOrchestrationContext,
    activity: str,
    inputs: Sequence[dict[str, Any]],
    sizes: Sequence[int],
    max_in_flight: int,
    on_progress: Callable[[list[dict[str, Any] | None]], None],
) -> Generator[TaskBase, Any, list[dict[str, Any]]]:
    """Run one activity per input, at most ``max_in_flight`` at a time; results in input order.

    ``on_progress(results)`` is called after every finished batch with the list so far (None for
    batches not finished yet).
    """
    results: list[dict[str, Any] | None] = [None] * len(inputs)
    in_flight: dict[TaskBase, int] = {}
    next_batch = 0
    on_progress(results)
    while next_batch < len(inputs) or in_flight:
        while next_batch < len(inputs) and len(in_flight) < max_in_flight:
            task = context.call_activity_with_retry(activity, ACTIVITY_RETRY, inputs[next_batch])
            in_flight[task] = next_batch
            next_batch += 1
        finished: TaskBase = yield context.task_any(list(in_flight))
        index = in_flight.pop(finished)
        if finished.state is TaskState.FAILED:
            if not context.is_replaying:
                logger.warning(
                    "instance %s: batch %d failed after retries; reconciling from the ledger",
                    context.instance_id,
                    index,
                )
            try:
                reconciled = yield context.call_activity_with_retry(
                    RECONCILE_BATCH,
                    ACTIVITY_RETRY,
                    {"ledgerKey": inputs[index]["ledgerKey"], "size": sizes[index]},
                )
            except Exception:  # the ledger is unreachable too: say so, keep the other batches
                if not context.is_replaying:
                    logger.error(
                        "instance %s: batch %d could not be reconciled", context.instance_id, index
                    )
                reconciled = _unknown(sizes[index])
            results[index] = reconciled
        else:
            results[index] = finished.result
        on_progress(results)
    return [r for r in results if r is not None]
