"""The two orchestrations: SES batches and SMTP connections, fanned out and gathered.

Both validate their input, split the recipients, run :func:`fan_out`, keep the custom status
(progress counts only, well under the 16 KB cap) up to date, and return the outcome
(``messageIds`` in recipient order, per-recipient ``failures`` and the counts).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from activities.names import SEND_SES_BATCH, SEND_SMTP_BATCH
from orchestrators.fanout import fan_out
from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR

bp = df.Blueprint()


def _progress_reporter(context: df.DurableOrchestrationContext, total: int, batches: int) -> Any:
    from sendmail.jobs import BatchResult, progress

    def report(results: list[dict[str, Any] | None]) -> None:
        parsed = [BatchResult.model_validate(r) if r is not None else None for r in results]
        context.set_custom_status(progress(total, batches, parsed).model_dump(mode="json"))

    return report


@bp.function_name(SES_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_ses_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    from sendmail.jobs import BatchResult, SesBatch, SesJob, assemble, ledger_key, split_batches

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
    results = yield from fan_out(
        context,
        SEND_SES_BATCH,
        inputs,
        [len(b) for b in batches],
        job.maxInFlight,
        _progress_reporter(context, len(job.recipients), len(batches)),
    )
    parsed = [BatchResult.model_validate(r) for r in results]
    return assemble("ses", batches, parsed).model_dump(mode="json")


@bp.function_name(SMTP_ORCHESTRATOR)
@bp.orchestration_trigger(context_name="context")
def send_smtp_orchestrator(
    context: df.DurableOrchestrationContext,
) -> Generator[TaskBase, Any, dict[str, Any]]:
    from sendmail.jobs import BatchResult, SmtpBatch, SmtpJob, assemble, ledger_key, split_even

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
    results = yield from fan_out(
        context,
        SEND_SMTP_BATCH,
        inputs,
        [len(s) for s in slices],
        len(slices),
        _progress_reporter(context, len(job.recipients), len(slices)),
    )
    parsed = [BatchResult.model_validate(r) for r in results]
    return assemble("smtp", slices, parsed).model_dump(mode="json")
