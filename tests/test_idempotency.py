"""Idempotency-Key: the key rules, the fingerprint, and the store — in memory and on Azurite.

The table store's atomic parts (insert-if-absent, ETag-conditioned take-over) run against a real
Azurite: 20 threads claiming one key at once get exactly one "start".
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from sendmail.admission.idempotency import (
    MAX_KEY_LENGTH,
    IdempotencyStore,
    MemoryIdempotencyStore,
    TableIdempotencyStore,
    fingerprints,
    parse_key,
    scoped_key,
)
from sendmail.contract.errors import KeyReused, ValidationFailed
from sendmail.contract.models import AwsEmailRequest, UserEmailRequest
from sendmail.sending.sealing import Sealer, new_key
from tests.support.azurite import fresh_table


def fingerprint(route: str, request: Any, macs: list[str] | None = None) -> str:
    """The fingerprint kept (the first of :func:`fingerprints`)."""
    return fingerprints(route, request, macs or [])[0]


T0 = datetime(2030, 1, 1, tzinfo=UTC)


# --- the key -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (None, None),
        ("abc-123", "abc-123"),
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("  spaced  ", "spaced"),
        ("x" * MAX_KEY_LENGTH, "x" * MAX_KEY_LENGTH),
        ("a key with spaces ~!", "a key with spaces ~!"),
    ],
)
def test_a_valid_key_is_read_as_given_quotes_optional(header: str | None, key: str | None) -> None:
    assert parse_key(header) == key


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("", "must not be empty"),
        ('""', "must not be empty"),
        ("x" * (MAX_KEY_LENGTH + 1), "at most 255"),
        ("clé", "printable ASCII"),
        ("tab\there", "printable ASCII"),
        ("bell\x07", "printable ASCII"),
    ],
)
def test_a_bad_key_is_a_400(header: str, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        parse_key(header)


# --- the fingerprint ---------------------------------------------------------------------------


def aws(**changes: Any) -> AwsEmailRequest:
    fields = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": ["a@example.com", "b@example.com"],
        "subject": "제목",
        "body": "본문",
        **changes,
    }
    return AwsEmailRequest.model_validate(fields)


def test_the_fingerprint_is_of_the_parsed_request_not_its_bytes() -> None:
    reordered = AwsEmailRequest.model_validate_json(
        '{ "body":"본문", "subject":"제목","recipientEmails":["a@example.com","b@example.com"],'
        '  "senderEmail":"se@aifactory.page" }'
    )
    assert fingerprint("aws-send", aws()) == fingerprint("aws-send", reordered)


@pytest.mark.parametrize(
    "changes",
    [{"subject": "other"}, {"body": "other"}, {"recipientEmails": ["a@example.com"]}],
)
def test_any_field_that_changes_the_send_changes_the_fingerprint(changes: dict[str, Any]) -> None:
    assert fingerprint("aws-send", aws()) != fingerprint("aws-send", aws(**changes))


def test_the_route_is_part_of_the_fingerprint() -> None:
    assert fingerprint("aws-send", aws()) != fingerprint("user-send", aws())


def user(password: str) -> UserEmailRequest:
    return UserEmailRequest.model_validate(
        {
            "provider": "GMAIL",
            "senderEmail": "me@gmail.com",
            "password": password,
            "recipientEmails": ["f@example.com"],
            "subject": "s",
            "body": "b",
        }
    )


def test_the_password_is_stood_for_by_its_mac_never_itself() -> None:
    """Found by the security review: a replay with another password answered the first send.
    The fingerprint now depends on the password through its MAC only."""
    sealer = Sealer(SecretStr(new_key()))
    first, other = user("first-secret"), user("another")
    digest = fingerprint("user-send", first, sealer.macs(first.password))
    assert digest != fingerprint("user-send", other, sealer.macs(other.password))
    assert digest == fingerprint("user-send", user("first-secret"), sealer.macs(first.password))
    # neither the password nor a plain hash of it is in what is stored
    assert "first-secret" not in json.dumps(digest)
    assert hashlib.sha256(b"first-secret").hexdigest() not in sealer.macs(first.password)


def test_a_retry_across_a_sealing_key_rotation_still_matches() -> None:
    """Newest key first: the record made under the old key matches while the old key stays."""
    old_key, new_key_ = new_key(), new_key()
    before = Sealer(SecretStr(old_key))
    after = Sealer(SecretStr(f"{new_key_},{old_key}"))
    request = user("pw")
    stored = fingerprints("user-send", request, before.macs(request.password))[0]
    assert stored in fingerprints("user-send", request, after.macs(request.password))
    assert stored not in fingerprints(
        "user-send", request, Sealer(SecretStr(new_key_)).macs(request.password)
    )


def test_callers_keys_scope_idempotency_keys() -> None:
    assert scoped_key("order-1", "caller-a-key") != scoped_key("order-1", "caller-b-key")
    assert scoped_key("order-1", "caller-a-key") == scoped_key("order-1", "caller-a-key")
    assert "caller-a-key" not in scoped_key("order-1", "caller-a-key")
    assert scoped_key("order-1", None) != scoped_key("order-1", "caller-a-key")


# --- the store: the same rules in memory and in Azure Tables -----------------------------------


@pytest.fixture(params=["memory", "table"])
def store(request: pytest.FixtureRequest) -> IdempotencyStore:
    if request.param == "memory":
        return MemoryIdempotencyStore()
    azurite = request.getfixturevalue("azurite")
    table = fresh_table(azurite, "Idem")
    return TableIdempotencyStore(table)


def test_the_first_request_with_a_key_starts_the_send_and_the_next_ones_find_it(
    store: IdempotencyStore,
) -> None:
    first = store.claim("aws-send", "k1", ["fp"], T0)
    again = store.claim("aws-send", "k1", ["fp"], T0 + timedelta(minutes=5))
    assert first.start
    assert not again.start
    assert again.instance_id == first.instance_id
    assert again.created == first.created


def test_the_same_key_for_another_request_is_refused(store: IdempotencyStore) -> None:
    store.claim("aws-send", "k1", ["fp"], T0)
    with pytest.raises(KeyReused, match="already used for a different aws-send request"):
        store.claim("aws-send", "k1", ["other-fp"], T0)


def test_keys_are_scoped_per_route(store: IdempotencyStore) -> None:
    ses = store.claim("aws-send", "k1", ["fp"], T0)
    smtp = store.claim("user-send", "k1", ["fp2"], T0)
    assert smtp.start
    assert smtp.instance_id != ses.instance_id


def test_after_its_time_a_reused_key_is_a_new_send(store: IdempotencyStore) -> None:
    old = store.claim("aws-send", "k1", ["fp"], T0)
    new = store.claim("aws-send", "k1", ["other"], T0 + timedelta(hours=24))
    assert new.start
    assert new.instance_id != old.instance_id


def test_only_one_taker_wins_an_abandoned_record(store: IdempotencyStore) -> None:
    store.claim("aws-send", "k1", ["fp"], T0)
    seen = store.claim("aws-send", "k1", ["fp"], T0 + timedelta(minutes=1))
    winners = [store.take_over(seen, T0 + timedelta(minutes=1)) for _ in range(3)]
    assert [w is not None for w in winners] == [True, False, False]
    assert winners[0] is not None
    assert winners[0].start
    assert winners[0].instance_id == seen.instance_id


def test_a_taken_over_key_is_held_from_the_takeover_on(store: IdempotencyStore) -> None:
    store.claim("aws-send", "k1", ["fp"], T0)
    seen = store.claim("aws-send", "k1", ["fp"], T0 + timedelta(minutes=1))
    assert seen.held == T0  # silent for a minute: anyone may take it over
    assert store.take_over(seen, T0 + timedelta(minutes=1)) is not None
    later = store.claim("aws-send", "k1", ["fp"], T0 + timedelta(minutes=1, seconds=5))
    # a third request five seconds after the takeover sees a fresh holder, not a silent one
    assert later.held == T0 + timedelta(minutes=1)
    assert not later.start


def test_confirming_renews_the_hold_unless_the_key_was_taken_over(
    store: IdempotencyStore,
) -> None:
    first = store.claim("aws-send", "k1", ["fp"], T0)
    confirmed = store.confirm(first, T0 + timedelta(seconds=10))
    assert confirmed is not None
    assert confirmed.held == T0 + timedelta(seconds=10)
    # the holder's admission then runs long; a retry takes the key over
    seen = store.claim("aws-send", "k1", ["fp"], T0 + timedelta(minutes=1))
    taken = store.take_over(seen, T0 + timedelta(minutes=1))
    assert taken is not None
    assert store.confirm(confirmed, T0 + timedelta(minutes=1, seconds=1)) is None
    assert store.confirm(taken, T0 + timedelta(minutes=1, seconds=2)) is not None


def test_a_released_key_can_be_used_again(store: IdempotencyStore) -> None:
    first = store.claim("aws-send", "k1", ["fp"], T0)
    store.release(first)
    again = store.claim("aws-send", "k1", ["fp"], T0)
    assert again.start


def test_twenty_requests_at_once_with_one_key_start_one_send(store: IdempotencyStore) -> None:
    claims: list[Any] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        barrier.wait()
        claims.append(store.claim("aws-send", "same", ["fp"], T0))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(claims) == 20
    assert sum(c.start for c in claims) == 1
    assert len({c.instance_id for c in claims}) == 1


def test_the_table_never_holds_the_key_or_the_request(azurite: Any) -> None:
    table = fresh_table(azurite, "Idem")
    TableIdempotencyStore(table).claim("aws-send", "customer-key-42", ["fp"], T0)
    [row] = list(table.list_entities())
    assert "customer-key-42" not in str(dict(row))
    assert set(row) == {
        "PartitionKey",
        "RowKey",
        "Fingerprint",
        "InstanceId",
        "CreatedAt",
        "HeldSince",
    }


def test_a_record_notes_that_its_send_started(store: IdempotencyStore) -> None:
    first = store.claim("aws-send", "k1", ["fp"], T0)
    assert not first.started
    store.mark_started(first)
    again = store.claim("aws-send", "k1", ["fp"], T0 + timedelta(minutes=5))
    assert (again.start, again.started, again.instance_id) == (False, True, first.instance_id)
