"""Splitting recipients and assembling results: the pure parts of the orchestrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sendmail.errors import QuotaExceeded, envelope
from sendmail.jobs import BatchFailure, BatchResult, assemble, split_batches, split_even
from sendmail.results import FailureCode


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
