"""The record of SNS notifications acted on (sendmail/feedback/replays.py), in memory and on
Azurite's Table service: a replay is recognised by MessageId, on the day it was signed."""

from __future__ import annotations

import pytest

from sendmail.feedback.replays import (
    MemoryProcessedMessages,
    ProcessedMessages,
    ReplayStoreError,
    TableProcessedMessages,
    processed_messages_from_environment,
)
from tests.support.azurite import Azurite, fresh_table

SIGNED = "2026-12-01T10:00:03.000Z"


@pytest.fixture(params=["memory", "azurite"])
def record(request: pytest.FixtureRequest) -> ProcessedMessages:
    if request.param == "memory":
        return MemoryProcessedMessages()
    azurite: Azurite = request.getfixturevalue("azurite")
    return TableProcessedMessages(fresh_table(azurite, "snsmsgs"))


def test_a_message_is_seen_once_remembered(record: ProcessedMessages) -> None:
    assert not record.seen("4d4dc071-ddbf-465d-bba8-08f81c89da64", SIGNED)
    record.remember("4d4dc071-ddbf-465d-bba8-08f81c89da64", SIGNED)
    record.remember("4d4dc071-ddbf-465d-bba8-08f81c89da64", SIGNED)  # idempotent
    assert record.seen("4d4dc071-ddbf-465d-bba8-08f81c89da64", SIGNED)
    assert not record.seen("another-id", SIGNED)


def test_ids_with_table_key_characters_and_odd_timestamps_are_kept_apart(
    record: ProcessedMessages,
) -> None:
    """MessageIds are SNS's UUIDs, but the field is the sender's text until verified... and
    after: keys are escaped, and a timestamp that is no date still lands somewhere."""
    for message_id in ("a/b", "a#b", "a?b", "a\\b"):
        record.remember(message_id, SIGNED)
    record.remember("x", "not a date")
    assert [record.seen(m, SIGNED) for m in ("a/b", "a#b", "a?b", "a\\b", "a%2Fb")] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert record.seen("x", "not a date")


def test_no_storage_is_a_store_error() -> None:
    with pytest.raises(ReplayStoreError):
        processed_messages_from_environment({})
