"""What crosses Durable boundaries: orchestration inputs, activity inputs and outputs, results.

Only JSON crosses: producers call ``model_dump(mode="json")`` and consumers re-validate with
``model_validate``. Activity outputs are kept compact (aligned lists, no addresses) because the
whole history is loaded on every replay. The pure functions here (batching, assembling the final
result) are what the orchestrators call, so they are tested without any Durable machinery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sendmail.providers import Provider
from sendmail.results import Delivery, FailureCode

Kind = Literal["ses", "smtp"]


class _Json(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mail(_Json):
    sender: str
    subject: str
    body: str


class SesJob(_Json):
    """Input of the SES orchestration. Batch parameters are fixed at start (replay-safe)."""

    kind: Literal["ses"] = "ses"
    mail: Mail
    recipients: list[str]
    batchSize: int = Field(ge=1)
    maxInFlight: int = Field(ge=1)
    #: Sends per second for each batch: the account's ``MaxSendRate`` shared by the window.
    maxRatePerBatch: float | None = Field(default=None, gt=0)


class SmtpJob(_Json):
    """Input of the SMTP orchestration. ``sealedPassword`` is a Fernet token, never plain."""

    kind: Literal["smtp"] = "smtp"
    mail: Mail
    provider: Provider
    sealedPassword: str
    recipients: list[str]
    connections: int = Field(ge=1)


class SesBatch(_Json):
    """Input of one SES batch activity. ``ledgerKey`` names the batch in the send ledger."""

    ledgerKey: str
    mail: Mail
    recipients: list[str]
    maxRate: float | None = Field(default=None, gt=0)


class SmtpBatch(_Json):
    """Input of one SMTP activity: one connection, one login, its slice of the recipients."""

    ledgerKey: str
    mail: Mail
    provider: Provider
    sealedPassword: str
    recipients: list[str]


class BatchFailure(_Json):
    index: int
    code: FailureCode
    message: str


class BatchResult(_Json):
    """An activity's output: ``messageIds[i]`` belongs to the batch's ``recipients[i]``."""

    messageIds: list[str | None]
    failures: list[BatchFailure] = []

    @classmethod
    def from_deliveries(cls, deliveries: Sequence[Delivery]) -> BatchResult:
        failures = [
            BatchFailure(
                index=i,
                code=d.code or FailureCode.DELIVERY_UNKNOWN,
                message=d.message or "not sent",
            )
            for i, d in enumerate(deliveries)
            if not d.ok
        ]
        return cls(messageIds=[d.message_id for d in deliveries], failures=failures)

    @classmethod
    def all_failed(cls, size: int, code: FailureCode, message: str) -> BatchResult:
        return cls(
            messageIds=[None] * size,
            failures=[BatchFailure(index=i, code=code, message=message) for i in range(size)],
        )


class Failure(_Json):
    recipient: str
    code: FailureCode
    message: str


class Progress(_Json):
    total: int
    sent: int
    failed: int
    batches: int
    batchesDone: int


class SendOutcome(_Json):
    """The orchestration output, as the Durable status API shows it to operators."""

    kind: Kind
    total: int
    sent: int
    failed: int
    messageIds: list[str]
    failures: list[Failure]


def ledger_key(instance_id: str, batch_no: int) -> str:
    return f"{instance_id}:{batch_no}"


def split_batches(recipients: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive slices of at most ``size`` recipients."""
    return [list(recipients[i : i + size]) for i in range(0, len(recipients), size)]


def split_even(recipients: Sequence[str], parts: int) -> list[list[str]]:
    """At most ``parts`` consecutive slices whose sizes differ by at most one."""
    parts = max(1, min(parts, len(recipients)))
    base, extra = divmod(len(recipients), parts)
    slices: list[list[str]] = []
    start = 0
    for n in range(parts):
        end = start + base + (1 if n < extra else 0)
        slices.append(list(recipients[start:end]))
        start = end
    return [s for s in slices if s]


def progress(total: int, batches: int, done: Iterable[BatchResult | None]) -> Progress:
    sent = failed = finished = 0
    for result in done:
        if result is None:
            continue
        finished += 1
        failed += len(result.failures)
        sent += sum(1 for m in result.messageIds if m is not None)
    return Progress(total=total, sent=sent, failed=failed, batches=batches, batchesDone=finished)


def assemble(
    kind: Kind, batches: Sequence[Sequence[str]], results: Sequence[BatchResult]
) -> SendOutcome:
    """Join batch results into the outcome, Message-IDs in recipient order."""
    message_ids: list[str] = []
    failures: list[Failure] = []
    for recipients, result in zip(batches, results, strict=True):
        by_index = {f.index: f for f in result.failures}
        for index, recipient in enumerate(recipients):
            message_id = result.messageIds[index] if index < len(result.messageIds) else None
            if message_id is not None:
                message_ids.append(message_id)
                continue
            failure = by_index.get(index)
            failures.append(
                Failure(
                    recipient=recipient,
                    code=failure.code if failure else FailureCode.DELIVERY_UNKNOWN,
                    message=failure.message if failure else "no result was reported",
                )
            )
    total = sum(len(b) for b in batches)
    return SendOutcome(
        kind=kind,
        total=total,
        sent=len(message_ids),
        failed=len(failures),
        messageIds=message_ids,
        failures=failures,
    )
