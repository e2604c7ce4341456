"""What crosses Durable boundaries: orchestration inputs, activity inputs and outputs, results.

Only JSON crosses: producers call ``model_dump(mode="json")`` and consumers re-validate with
``model_validate``. Activity outputs are kept compact (aligned lists, no addresses) because the
whole history is loaded on every replay. The pure functions here (batching, assembling the final
result) are what the orchestrators call, so they are tested without any Durable machinery.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sendmail.contract.vocabulary import FailureCode, Kind, Provider
from sendmail.sending.results import BatchReport, Delivery


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
    #: Lanes: batches of this send that run at once (each lane sends its batches in turn).
    lanes: int = Field(ge=1)
    #: The account's ``MaxSendRate`` at admission (None: unknown, unpaced); the lanes share it.
    maxRate: float | None = Field(default=None, gt=0)
    #: After this long, recipients SES kept throttling or refusing are failed
    #: (:func:`send_deadline_seconds`).
    deadlineSeconds: float = Field(gt=0)


class SmtpJob(_Json):
    """Input of the SMTP orchestration. The password is not in it: ``secretRef`` names it in
    the secret store (:mod:`sendmail.sending.secrets`), which forgets it when the send ends.
    ``sealedPassword`` (a Fernet token) is what sends started before that carried: read, never
    written."""

    kind: Literal["smtp"] = "smtp"
    mail: Mail
    provider: Provider
    secretRef: str | None = None
    sealedPassword: str | None = None
    recipients: list[str]
    connections: int = Field(ge=1)


class LaneBatch(_Json):
    """One batch of a lane. ``ledgerKey`` names it in the send ledger (``instance:batch``)."""

    ledgerKey: str
    recipients: list[str]


class LaneJob(_Json):
    """Input of one lane: its batches, sent one after another, and what its activities need."""

    kind: Kind
    mail: Mail
    batches: list[LaneBatch]
    #: SES: this lane's share of the account's rate, and when transient failures become final.
    maxRate: float | None = Field(default=None, gt=0)
    deadline: AwareDatetime | None = None
    #: SMTP: the provider and where the password is (never the password itself).
    provider: Provider | None = None
    secretRef: str | None = None
    sealedPassword: str | None = None


class SesBatch(_Json):
    """Input of one run of an SES batch activity. ``ledgerKey`` names the batch in the ledger.

    A first run carries the whole batch. A later run carries only the recipients still pending,
    with their ``indices`` in the batch (of ``size`` recipients), so that a throttling storm
    does not repeat the whole batch in the history at every run. ``startRate`` is where the
    pace starts (where the lane's previous run ended).
    """

    ledgerKey: str
    mail: Mail
    recipients: list[str]
    indices: list[int] | None = None
    size: int | None = Field(default=None, ge=0)
    maxRate: float | None = Field(default=None, gt=0)
    startRate: float | None = Field(default=None, gt=0)
    deadline: AwareDatetime | None = None


class SmtpBatch(_Json):
    """Input of one SMTP activity: one connection, one login, its slice of the recipients."""

    ledgerKey: str
    mail: Mail
    provider: Provider
    secretRef: str | None = None
    sealedPassword: str | None = None
    recipients: list[str]


class BatchFailure(_Json):
    index: int
    code: FailureCode
    message: str


class BatchStop(_Json):
    """An account-level failure (sending paused, daily quota, credentials) that stopped a batch:
    every later batch of the send would meet it too."""

    code: FailureCode
    message: str


class BatchResult(_Json):
    """An activity's output: ``messageIds[i]`` belongs to the batch's ``recipients[i]``.

    ``pending`` lists the recipients not sent *yet* (throttling, 5xx, the run's time ran out),
    each with the code and message it ends with if the send's deadline passes first; ``rate``
    is the pace the run ended at and ``stalled`` says SES kept refusing (wait before the next
    run). Indices in none of the lists were settled by an earlier run of the same batch.
    ``stopped`` is set when an account-level failure stopped the run.
    """

    messageIds: list[str | None]
    failures: list[BatchFailure] = []
    pending: list[BatchFailure] = []
    rate: float | None = None
    stalled: bool = False
    stopped: BatchStop | None = None

    @classmethod
    def from_outcome(
        cls, size: int, outcome: Mapping[int, Delivery], report: BatchReport | None = None
    ) -> BatchResult:
        """The result of one run: ``outcome`` holds a delivery for each index it settled or
        left pending; indices it does not hold were settled by an earlier run."""

        def failure(index: int, delivery: Delivery) -> BatchFailure:
            return BatchFailure(
                index=index,
                code=delivery.code or FailureCode.DELIVERY_UNKNOWN,
                message=delivery.message or "not sent",
            )

        ordered = sorted(outcome.items())
        return cls(
            messageIds=[outcome[i].message_id if i in outcome else None for i in range(size)],
            failures=[failure(i, d) for i, d in ordered if d.is_final_failure],
            pending=[failure(i, d) for i, d in ordered if d.pending],
            rate=report.rate if report is not None else None,
            stalled=report.stalled if report is not None else False,
            stopped=(
                BatchStop(code=report.stop[0], message=report.stop[1])
                if report is not None and report.stop is not None
                else None
            ),
        )

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
    """Counts published in the custom status (the parent's, and each lane's for its share)."""

    total: int
    sent: int
    failed: int
    #: Recipients SES refused for now (throttling, 5xx), waiting for their next attempt.
    pending: int = 0
    batches: int
    batchesDone: int
    #: The parent's: how many lanes it runs (the status route reads each lane's progress).
    lanes: int = 0


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


#: A batch is grown to about this many seconds of sending at its lane's share of the rate: each
#: boundary between two batches of a lane costs two queue hops on Azure (docs/architecture.md).
BATCH_SECONDS = 60
#: ... but never beyond this many recipients (its result, 64 bytes of Message-ID each, is
#: checkpointed in the history).
MAX_BATCH_SIZE = 5000


def plan_ses(
    recipients: int, rate: float | None, *, min_batch: int, max_lanes: int
) -> tuple[int, int]:
    """(lanes, batch size) for an SES send of ``recipients`` at ``rate`` (MaxSendRate).

    Lanes: the batches that run at once, at most ``max_lanes`` and at most one per
    ``min_batch`` recipients (a small send keeps the whole rate in one lane). Batch size: at
    least ``min_batch``, grown to :data:`BATCH_SECONDS` of sending at the lane's share of the
    rate, at most :data:`MAX_BATCH_SIZE`.
    """
    lanes = max(1, min(max_lanes, math.ceil(recipients / min_batch)))
    if not rate or rate <= 0:
        return lanes, min_batch
    timed = math.ceil(rate / lanes * BATCH_SECONDS)
    return lanes, max(min_batch, min(MAX_BATCH_SIZE, timed))


def send_deadline_seconds(recipients: int, rate: float | None, grace: float) -> float:
    """How long an SES send may take before what is still pending fails: the time the account's
    rate needs for ``recipients`` plus ``grace`` (``SENDMAIL_SES_SEND_DEADLINE_SECONDS``), so a
    large send at a small rate (50,000 at 14/s need an hour of pacing alone) is not failed for
    being large; without a known rate, ``grace``."""
    if not rate or rate <= 0:
        return grace
    return grace + math.ceil(recipients / rate)


def lane_batch_slices(recipients: Sequence[str], lanes: int, size: int) -> list[list[list[str]]]:
    """Recipients split evenly over at most ``lanes`` lanes, each lane's share in batches.

    Even shares make the lanes finish together (a lane left with one extra batch would run
    alone, at its share of the rate, at the end). Batches keep recipient order across lanes.
    """
    return [split_batches(share, size) for share in split_even(recipients, lanes)]


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


def progress(
    total: int,
    batches: int,
    done: Iterable[BatchResult],
    *,
    pending: int = 0,
    lanes: int = 0,
) -> Progress:
    sent = failed = finished = 0
    for result in done:
        finished += 1
        failed += len(result.failures)
        sent += sum(1 for m in result.messageIds if m is not None)
    return Progress(
        total=total,
        sent=sent,
        failed=failed,
        pending=pending,
        batches=batches,
        batchesDone=finished,
        lanes=lanes,
    )


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
