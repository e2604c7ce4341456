"""The plan of a send (lanes, batches, ledger keys) and what crosses Durable boundaries: the pure
parts of the orchestrations, which the recipients route shares."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sendmail.contract.errors import QuotaExceeded, envelope
from sendmail.contract.vocabulary import FailureCode
from sendmail.sending.jobs import (
    BATCH_SECONDS,
    MAX_BATCH_SIZE,
    BatchTally,
    FailBatch,
    LaneJob,
    LaneTally,
    SendOutcome,
    SesBatch,
    SesJob,
    SmtpJob,
    batch_bounds,
    batch_of,
    lane_ranges,
    ledger_key,
    plan_ses,
    progress,
    send_deadline_seconds,
    smtp_plan,
)


@pytest.mark.parametrize(
    ("total", "lanes", "expected"),
    [
        (1, 3, [(0, 1)]),  # never an empty lane
        (2, 3, [(0, 1), (1, 2)]),
        (3, 3, [(0, 1), (1, 2), (2, 3)]),
        (10, 3, [(0, 4), (4, 7), (7, 10)]),
        (100, 3, [(0, 34), (34, 67), (67, 100)]),
        (7, 1, [(0, 7)]),
        (8, 4, [(0, 2), (2, 4), (4, 6), (6, 8)]),
    ],
)
def test_lanes_are_consecutive_ranges_of_sizes_that_differ_by_at_most_one(
    total: int, lanes: int, expected: list[tuple[int, int]]
) -> None:
    assert lane_ranges(total, lanes) == expected


@pytest.mark.parametrize(
    ("total", "lanes", "size", "expected"),
    [
        (1, 1, 500, [(0, 1)]),
        (500, 1, 500, [(0, 500)]),
        (501, 1, 500, [(0, 500), (500, 1)]),
        (1234, 1, 500, [(0, 500), (500, 500), (1000, 234)]),
        # each lane is cut into batches on its own: a lane's last batch may be short
        (10, 3, 3, [(0, 3), (3, 1), (4, 3), (7, 3)]),
        (2537, 3, 400, [
            (0, 400), (400, 400), (800, 46),
            (846, 400), (1246, 400), (1646, 46),
            (1692, 400), (2092, 400), (2492, 45),
        ]),
    ],
)  # fmt: skip
def test_batch_bounds_cut_each_lane_into_batches_in_request_order(
    total: int, lanes: int, size: int, expected: list[tuple[int, int]]
) -> None:
    assert batch_bounds(total, lanes, size) == expected


PLANS = [
    (1, 1, 1),
    (1, 4, 500),
    (7, 3, 2),
    (10, 3, 3),
    (999, 4, 100),
    (1000, 4, 250),
    (1001, 4, 250),
    (2537, 3, 400),
    (12_345, 7, 500),
]


@pytest.mark.parametrize(("total", "lanes", "size"), PLANS)
def test_the_batches_cover_every_recipient_once_and_batch_of_finds_each(
    total: int, lanes: int, size: int
) -> None:
    bounds = batch_bounds(total, lanes, size)
    covered = [i for start, count in bounds for i in range(start, start + count)]
    assert covered == list(range(total))  # once each, in request order
    assert all(1 <= count <= size for _, count in bounds)
    holder = {i: (start, count) for start, count in bounds for i in range(start, start + count)}
    for index in range(total):
        assert batch_of(total, lanes, size, index) == holder[index]


@pytest.mark.parametrize("index", [-1, 2537, 10_000])
def test_batch_of_refuses_an_index_outside_the_send(index: int) -> None:
    with pytest.raises(ValueError, match="outside a send of 2537"):
        batch_of(2537, 3, 400, index)


def _lane(start: int, end: int, size: int) -> LaneJob:
    return LaneJob(kind="ses", sendId="s", listRef="s", start=start, end=end, batchSize=size)


@pytest.mark.parametrize(("total", "lanes", "size"), PLANS)
def test_the_lanes_batches_are_the_sends_batches(total: int, lanes: int, size: int) -> None:
    """The orchestration runs LaneJob.batches(); the recipients route reads batch_bounds: the
    same ledger partitions."""
    from_lanes = [
        batch
        for start, end in lane_ranges(total, lanes)
        for batch in _lane(start, end, size).batches()
    ]
    assert from_lanes == batch_bounds(total, lanes, size)


def test_a_lanes_batches() -> None:
    assert _lane(846, 1692, 400).batches() == [(846, 400), (1246, 400), (1646, 46)]
    assert _lane(5, 6, 400).batches() == [(5, 1)]
    assert _lane(5, 5, 400).batches() == []


@pytest.mark.parametrize(
    ("total", "connections", "plan"),
    [
        (1, 3, (1, 1)),
        (2, 3, (2, 1)),
        (3, 3, (3, 1)),
        (10, 3, (3, 4)),
        (100, 3, (3, 34)),
        (100, 1, (1, 100)),
    ],
)
def test_an_smtp_send_is_one_batch_per_connection(
    total: int, connections: int, plan: tuple[int, int]
) -> None:
    assert smtp_plan(total, connections) == plan
    lanes, size = plan
    # one batch per lane: every lane fits in the batch size
    assert batch_bounds(total, lanes, size) == [
        (start, end - start) for start, end in lane_ranges(total, connections)
    ]


def test_ledger_keys_are_zero_padded_so_a_sends_batches_sort_in_request_order() -> None:
    assert ledger_key("abc", 0) == "abc:0000000000"
    assert ledger_key("abc", 846) == "abc:0000000846"
    assert ledger_key("abc", 999_999) == "abc:0000999999"
    starts = [start for start, _ in batch_bounds(1_000_000, 4, 5_000)]
    keys = [ledger_key("send-1", start) for start in starts]
    assert sorted(keys) == keys
    assert len(set(keys)) == len(keys)


def test_the_orchestration_inputs_carry_no_recipients_and_no_content() -> None:
    job = SesJob(listRef="s1", total=3, batchSize=500, lanes=1, deadlineSeconds=60)
    assert set(job.model_dump()) == {
        "kind",
        "listRef",
        "total",
        "batchSize",
        "lanes",
        "maxRate",
        "deadlineSeconds",
        "scheduledAt",  # a time, or None: nothing about the recipients
    }
    with pytest.raises(ValidationError):
        SesJob.model_validate({**job.model_dump(), "recipients": ["a@example.com"]})
    smtp = SmtpJob(listRef="s1", total=3, provider="GMAIL", secretRef="ref", connections=2)
    with pytest.raises(ValidationError):
        SmtpJob.model_validate({**smtp.model_dump(), "mail": {"sender": "a@example.com"}})
    with pytest.raises(ValidationError):
        SesBatch.model_validate(
            {"ledgerKey": "k", "listRef": "s1", "start": 0, "count": 1, "recipients": ["a"]}
        )


def test_batch_and_lane_results_are_counts_that_round_trip_as_json() -> None:
    tally = BatchTally(
        sent=3,
        failed=1,
        pending=2,
        pendingCode=FailureCode.SES_THROTTLED,
        pendingMessage="later",
        rate=7.5,
        stalled=True,
    )
    assert BatchTally.model_validate(tally.model_dump(mode="json")) == tally
    assert BatchTally(sent=0, failed=0).pending == 0
    with pytest.raises(ValidationError):
        BatchTally(sent=-1, failed=0)
    with pytest.raises(ValidationError):
        BatchTally.model_validate({"sent": 1, "failed": 0, "messageIds": ["m"]})
    lane = LaneTally(sent=3, failed=1, batches=2)
    assert LaneTally.model_validate(lane.model_dump()) == lane
    outcome = SendOutcome(kind="ses", total=4, sent=3, failed=1)
    assert set(outcome.model_dump()) == {"kind", "total", "sent", "failed", "canceled"}
    fail = FailBatch(ledgerKey="k", count=3, code=FailureCode.BATCH_FAILED, message="kept failing")
    assert FailBatch.model_validate(fail.model_dump(mode="json")) == fail


def test_a_lane_carries_its_counters_from_one_generation_to_the_next() -> None:
    lane = _lane(0, 10, 3).model_copy(update={"nextBatch": 2, "sent": 5, "failed": 1, "rate": 4})
    again = LaneJob.model_validate(lane.model_dump(mode="json"))
    assert (again.nextBatch, again.sent, again.failed, again.rate) == (2, 5, 1, 4)
    assert again.batches() == [(0, 3), (3, 3), (6, 3), (9, 1)]


def test_progress_counts() -> None:
    shown = progress(100, 4, 60, 5, 2, pending=10, canceled=3, lanes=2)
    assert shown.model_dump() == {
        "total": 100,
        "sent": 60,
        "failed": 5,
        "pending": 10,
        "canceled": 3,
        "batches": 4,
        "batchesDone": 2,
        "lanes": 2,
    }
    assert progress(1, 1, 0, 0, 0).pending == 0


def test_the_v1_envelope() -> None:
    moment = datetime(2025, 7, 2, 15, 4, 33, 123456, tzinfo=UTC)
    assert envelope(400, "Validation failed: x", "/api/v1/emails/aws-send", now=moment) == {
        "timestamp": "2025-07-02T15:04:33Z",
        "status": 400,
        "error": "Bad Request",
        "message": "Validation failed: x",
        "path": "/api/v1/emails/aws-send",
    }


def test_quota_exceeded_carries_retry_after() -> None:
    error = QuotaExceeded("later", retry_after=60)
    assert error.headers == {"Retry-After": "60"}
    assert error.status == 429


@pytest.mark.parametrize(
    ("recipients", "rate", "lanes", "batch"),
    [
        (1, 14.0, 1, 840),  # a small send: one lane with the whole rate, a minute of it
        (500, 14.0, 1, 840),
        (501, 14.0, 2, 500),  # 7/s a lane: a minute is 420, the floor is the setting
        (50_000, 14.0, 4, 500),
        (3_000, 100.0, 4, 1_500),  # 25/s a lane: 60 s of sending per batch
        (9_000, 300.0, 4, 4_500),
        (50_000, 1_000.0, 4, 5_000),  # at most MAX_BATCH_SIZE
        (2_000, None, 4, 500),  # rate unknown: the setting
    ],
)
def test_a_send_is_planned_as_lanes_of_batches_of_about_a_minute(
    recipients: int, rate: float | None, lanes: int, batch: int
) -> None:
    assert plan_ses(recipients, rate, min_batch=500, max_lanes=4) == (lanes, batch)
    assert BATCH_SECONDS == 60
    assert MAX_BATCH_SIZE == 5_000


@pytest.mark.parametrize(
    ("recipients", "rate", "deadline"),
    [
        (50_000, 14.0, 3_600 + 3_572),  # an hour of pacing alone: the grace comes after it
        (3_000, 100.0, 3_600 + 30),
        (1, 14.0, 3_600 + 1),
        (50_000, None, 3_600),  # rate unknown (unpaced): the grace only
    ],
)
def test_a_sends_deadline_is_the_time_its_rate_needs_plus_the_grace(
    recipients: int, rate: float | None, deadline: float
) -> None:
    assert send_deadline_seconds(recipients, rate, 3_600) == deadline
