"""The two orchestrations: SES batches and SMTP connections, fanned out and gathered.

Both validate their input, split the recipients, run :func:`fan_out`, keep the custom status
(progress counts only, well under the 16 KB cap) up to date, and return the outcome
(``messageIds`` in recipient order, per-recipient ``failures`` and the counts).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import SEND_SES_BATCH, SEND_SMTP_BATCH
from orchestrators.fanout import fan_out
from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR

if TYPE_CHECKING:
    from sendmail.jobs import Kind

bp = df.Blueprint()


def _progress_reporter(context: df.DurableOrchestrationContext, total: int, batches: int) -> Any:
    from sendmail.jobs import BatchResult, progress

    def report(results: list[dict[str, Any] | None]) -> None:
        parsed = [BatchResult.model_validate(r) if r is not None else None for r in results]
        context.set_custom_status(progress(total, batches, parsed).model_dump(mode="json"))

    return report


def _gather(
    context: df.DurableOrchestrationContext,
    kind: Kind,
    activity: str,
    slices: list[list[str]],
    inputs: list[dict[str, Any]],
    max_in_flight: int,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """Fan the batch inputs out and assemble the outcome in recipient order."""
    from sendmail.jobs import BatchResult, assemble

    total = sum(len(s) for s in slices)
    results = yield from fan_out(
        context,
        activity,
        inputs,
        [len(s) for s in slices],
        max_in_flight,
        _progress_reporter(context, total, len(slices)),
    )
    parsed = [BatchResult.model_validate(r) for r in results]
    return assemble(kind, slices, parsed).model_dump(mode="json")


@bp.function_name(SES_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_ses_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    from sendmail.jobs import SesBatch, SesJob, ledger_key, split_batches

    job = SesJob.model_validate(context.get_input())
    batches = split_batches(job.recipients, job.batchSize)
    inputs = [
        SesBatch(
            ledgerKey=ledger_key(context.instance_id, n),
            mail=job.mail,
            recipients=batch,
            maxRate=job.maxRatePerBatch,
        ).model_dump(mode="json")
        for n, batch in enumerate(batches)
    ]
    return (yield from _gather(context, "ses", SEND_SES_BATCH, batches, inputs, job.maxInFlight))


@bp.function_name(SMTP_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_smtp_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    from sendmail.jobs import SmtpBatch, SmtpJob, ledger_key, split_even

    job = SmtpJob.model_validate(context.get_input())
    slices = split_even(job.recipients, job.connections)
    inputs = [
        SmtpBatch(
            ledgerKey=ledger_key(context.instance_id, n),
            mail=job.mail,
            provider=job.provider,
            sealedPassword=job.sealedPassword,
            recipients=part,
        ).model_dump(mode="json")
        for n, part in enumerate(slices)
    ]
    return (yield from _gather(context, "smtp", SEND_SMTP_BATCH, slices, inputs, len(slices)))
