"""What crosses Durable boundaries: orchestration inputs, activity inputs and outputs, results.

Only JSON crosses: producers call ``model_dump(mode="json")`` and consumers re-validate with
``model_validate``. Nothing here grows with the send beyond one batch: the recipients and the
content are in Blob Storage (:mod:`sendmail.sending.lists`), every recipient's outcome is in the
send ledger, and what crosses is references, ranges and counts — the whole history is loaded on
every replay (docs/architecture.md, "Size"). The pure functions here (the plan: lanes, batches)
are what the orchestrators and the routes call, so they are tested without Durable machinery.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sendmail.contract.vocabulary import Category, FailureCode, Kind, Provider

#: Why a batch run stopped early: the send's record says it is paused or canceled.
Held = Literal["paused", "canceled"]


class _Json(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mail(_Json):
    """The content of a send, stored once per send (:mod:`sendmail.sending.lists`)."""

    sender: str
    subject: str
    body: str
    #: The HTML part (None: plain text only).
    html: str | None = None
    category: Category = "transactional"
    #: subject, body and html are templates, rendered per recipient with its variables
    #: (sendmail.sending.content); otherwise they are sent as they are.
    personalised: bool = False


class SesJob(_Json):
    """Input of the SES orchestration: a reference to the stored list and content, counts and
    the plan — never the recipients (:mod:`sendmail.sending.lists`). Fixed at start
    (replay-safe)."""

    kind: Literal["ses"] = "ses"
    listRef: str
    total: int = Field(ge=1)
    batchSize: int = Field(ge=1)
    #: Lanes: batches of this send that run at once (each lane sends its batches in turn).
    lanes: int = Field(ge=1)
    #: The account's ``MaxSendRate`` at admission (None: unknown, unpaced); the lanes share it.
    maxRate: float | None = Field(default=None, gt=0)
    #: After this long, recipients SES kept throttling or refusing are failed
    #: (:func:`send_deadline_seconds`).
    deadlineSeconds: float = Field(gt=0)
    #: Wait until then (a durable timer) before sending; the quota is read and reserved, and
    #: the pace set, at that time (:func:`sendmail.admission.reservations`).
    scheduledAt: AwareDatetime | None = None


class StartedSchedule(_Json):
    """What a scheduled SES send learns when its time comes: the account's rate then."""

    maxRate: float | None = Field(default=None, gt=0)


class SmtpJob(_Json):
    """Input of the SMTP orchestration. The password is not in it: ``secretRef`` names it in
    the secret store (:mod:`sendmail.sending.secrets`), which forgets it when the send ends."""

    kind: Literal["smtp"] = "smtp"
    listRef: str
    total: int = Field(ge=1)
    provider: Provider
    secretRef: str
    connections: int = Field(ge=1)
    #: Wait until then (a durable timer) before sending.
    scheduledAt: AwareDatetime | None = None


class BatchStop(_Json):
    """An account-level failure (sending paused, daily quota, credentials) that stopped a batch:
    every later batch of the send would meet it too."""

    code: FailureCode
    message: str


class LaneJob(_Json):
    """Input of one lane: the range ``start`` .. ``end - 1`` of the send's list, sent in batches
    of ``batchSize`` one after another. A lane starts a new generation (``continue_as_new``)
    every few batches, carrying ``nextBatch``, its counters, its pace and an account-level stop:
    its history stays bounded whatever the send's size (orchestrators/lanes.py)."""

    kind: Kind
    sendId: str
    listRef: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    batchSize: int = Field(ge=1)
    #: SES: this lane's share of the account's rate, and when transient failures become final.
    maxRate: float | None = Field(default=None, gt=0)
    deadline: AwareDatetime | None = None
    #: SMTP: the provider and where the password is (never the password itself).
    provider: Provider | None = None
    secretRef: str | None = None
    #: Carried from one generation to the next.
    nextBatch: int = Field(default=0, ge=0)
    sent: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    rate: float | None = Field(default=None, gt=0)
    stopped: BatchStop | None = None
    canceled: int = Field(default=0, ge=0)
    #: After a pause: what the batch ``nextBatch`` sent and could not record (its next run
    #: writes it and never sends it again; see :attr:`BatchTally.unrecorded`).
    unrecorded: dict[int, str] = {}

    def batches(self) -> list[tuple[int, int]]:
        """(start in the send, count) of each batch of the lane."""
        return [
            (first, min(self.batchSize, self.end - first))
            for first in range(self.start, self.end, self.batchSize)
        ]


class SesBatch(_Json):
    """Input of one run of an SES batch activity: the batch's place in the stored list (the
    activity reads its recipients and the content there) and its pace. Every run carries the
    same batch; the activity sends only what the ledger holds no outcome for."""

    ledgerKey: str
    listRef: str
    start: int = Field(ge=0)
    count: int = Field(ge=0)
    maxRate: float | None = Field(default=None, gt=0)
    startRate: float | None = Field(default=None, gt=0)
    deadline: AwareDatetime | None = None
    #: Sent by an earlier run and not in the ledger (it was failing): index -> Message-ID.
    unrecorded: dict[int, str] = {}


class SmtpBatch(_Json):
    """Input of one SMTP activity: one connection, one login, its slice of the list."""

    ledgerKey: str
    listRef: str
    start: int = Field(ge=0)
    count: int = Field(ge=0)
    provider: Provider
    secretRef: str
    unrecorded: dict[int, str] = {}


class FailBatch(_Json):
    """Input of the activity that fails, with one code, every recipient of a batch that has no
    outcome yet (the deadline passed, an account-level stop, a batch that kept failing)."""

    ledgerKey: str
    count: int = Field(ge=0)
    code: FailureCode
    message: str
    unrecorded: dict[int, str] = {}


class BatchTally(_Json):
    """What a batch activity returns: counts, never per-recipient data.

    ``sent`` and ``failed`` count the batch's recipients with an outcome in the ledger after
    this run (earlier runs' included); ``pending`` the ones still without one (throttling, 5xx,
    the run's time ran out), which end as ``pendingCode`` if the send's deadline passes first.
    ``rate`` is the pace the run ended at, ``stalled`` says SES kept refusing (wait before the
    next run), ``stopped`` an account-level failure that stopped the run. Per-recipient data
    appears only in ``unrecorded``, and only while the ledger fails.
    """

    sent: int = Field(ge=0)
    failed: int = Field(ge=0)
    #: Failed as ``CANCELED`` (the send was canceled): counted apart from ``failed``.
    canceled: int = Field(default=0, ge=0)
    pending: int = Field(default=0, ge=0)
    pendingCode: FailureCode | None = None
    pendingMessage: str | None = None
    rate: float | None = None
    stalled: bool = False
    stopped: BatchStop | None = None
    #: Only when the ledger failed: what this batch sent and could not record (index ->
    #: Message-ID). The lane hands it to the batch's next run, which never sends them again.
    unrecorded: dict[int, str] = {}
    #: The run stopped early because the send is paused or canceled (its record said so):
    #: what it did not send is ``pending``, to be sent after a resume or canceled.
    held: Held | None = None
    #: With ``held``: the number of the control change the run saw (the record's
    #: ``control_seq``); a paused lane waits for the next one (sendmail/sending/control.py).
    controlSeq: int = Field(default=0, ge=0)


class LaneTally(_Json):
    """A lane's output: its counts."""

    sent: int
    failed: int
    batches: int
    canceled: int = 0


class Progress(_Json):
    """Counts published in the custom status (the parent's, and each lane's for its share)."""

    total: int
    sent: int
    failed: int
    #: Recipients SES refused for now (throttling, 5xx), waiting for their next attempt.
    pending: int = 0
    #: Not sent because the send was canceled.
    canceled: int = 0
    batches: int
    batchesDone: int
    #: The parent's: how many lanes it runs (the status route reads each lane's progress).
    lanes: int = 0


class SendOutcome(_Json):
    """The orchestration output: counts (per-recipient results are in the ledger, read through
    the recipients route)."""

    kind: Kind
    total: int
    sent: int
    failed: int
    canceled: int = 0


def ledger_key(instance_id: str, start: int) -> str:
    """The batch's key in the send ledger: the send and the batch's first recipient's index,
    zero-padded so that a send's batches sort in request order."""
    return f"{instance_id}:{start:010d}"


#: A batch is grown to about this many seconds of sending at its lane's share of the rate: each
#: boundary between two batches of a lane costs two queue hops on Azure (docs/architecture.md).
BATCH_SECONDS = 60
#: ... but never beyond this many recipients (a run reads its slice of the list and its ledger
#: partition whole, and a crashed run re-reads them).
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


def lane_ranges(total: int, lanes: int) -> list[tuple[int, int]]:
    """At most ``lanes`` consecutive ranges (start, end) of ``total`` recipients whose sizes
    differ by at most one: even shares make the lanes finish together (a lane left with one
    extra batch would run alone, at its share of the rate, at the end)."""
    parts = max(1, min(lanes, total))
    base, extra = divmod(total, parts)
    ranges: list[tuple[int, int]] = []
    start = 0
    for n in range(parts):
        end = start + base + (1 if n < extra else 0)
        if end > start:
            ranges.append((start, end))
        start = end
    return ranges


def batch_bounds(total: int, lanes: int, size: int) -> list[tuple[int, int]]:
    """(start, count) of every batch of a send, in request order: each lane's range in batches
    of ``size``. The orchestration and the recipients route both derive the ledger's
    partitions from it."""
    return [
        (first, min(size, end - first))
        for start, end in lane_ranges(total, lanes)
        for first in range(start, end, size)
    ]


def batch_of(total: int, lanes: int, size: int, index: int) -> tuple[int, int]:
    """The batch (start, count) that holds recipient ``index`` — without listing them all."""
    if not 0 <= index < total:
        raise ValueError(f"recipient {index} is outside a send of {total}")
    for start, end in lane_ranges(total, lanes):
        if start <= index < end:
            first = start + (index - start) // size * size
            return first, min(size, end - first)
    raise AssertionError("the lanes cover every recipient")


def smtp_plan(total: int, connections: int) -> tuple[int, int]:
    """(lanes, batch size) of an SMTP send: one lane per connection, one batch per lane."""
    lanes = len(lane_ranges(total, connections))
    return lanes, max(1, math.ceil(total / lanes))


def progress(
    total: int,
    batches: int,
    sent: int,
    failed: int,
    batches_done: int,
    *,
    pending: int = 0,
    canceled: int = 0,
    lanes: int = 0,
) -> Progress:
    return Progress(
        total=total,
        sent=sent,
        failed=failed,
        pending=pending,
        canceled=canceled,
        batches=batches,
        batchesDone=batches_done,
        lanes=lanes,
    )
