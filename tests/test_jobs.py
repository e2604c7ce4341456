"""Splitting recipients and assembling results: the pure parts of the orchestrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sendmail.contract.errors import QuotaExceeded, envelope
from sendmail.contract.vocabulary import FailureCode
from sendmail.sending.jobs import (
    BATCH_SECONDS,
    MAX_BATCH_SIZE,
    BatchFailure,
    BatchResult,
    assemble,
    plan_ses,
    send_deadline_seconds,
    split_batches,
    split_even,
)


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (0, 500, []),
        (1, 500, [1]),
        (500, 500, [500]),
        (501, 500, [500, 1]),
        (1234, 500, [500, 500, 234]),
    ],
)
def test_split_batches(count: int, size: int, expected: list[int]) -> None:
    recipients = [f"r{i}" for i in range(count)]
    batches = split_batches(recipients, size)
    assert [len(b) for b in batches] == expected
    assert [r for b in batches for r in b] == recipients


@pytest.mark.parametrize(
    ("count", "parts", "expected"),
    [(1, 3, [1]), (2, 3, [1, 1]), (3, 3, [1, 1, 1]), (10, 3, [4, 3, 3]), (100, 3, [34, 33, 33])],
)
def test_split_even(count: int, parts: int, expected: list[int]) -> None:
    recipients = [f"r{i}" for i in range(count)]
    slices = split_even(recipients, parts)
    assert [len(s) for s in slices] == expected
    assert [r for s in slices for r in s] == recipients


def test_a_result_missing_for_a_recipient_is_reported_not_dropped() -> None:
    result = BatchResult(messageIds=["m0"], failures=[])
    outcome = assemble("ses", [["a@x.com", "b@x.com"]], [result])
    assert outcome.messageIds == ["m0"]
    assert [(f.recipient, f.code) for f in outcome.failures] == [
        ("b@x.com", FailureCode.DELIVERY_UNKNOWN)
    ]
    assert outcome.total == outcome.sent + outcome.failed


def test_all_failed_marks_every_recipient() -> None:
    result = BatchResult.all_failed(3, FailureCode.SMTP_AUTH_FAILED, "login refused")
    assert result.messageIds == [None, None, None]
    assert [f.index for f in result.failures] == [0, 1, 2]
    assert BatchFailure.model_validate(result.failures[0].model_dump()) == result.failures[0]


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
