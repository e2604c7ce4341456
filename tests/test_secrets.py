"""Secrets kept apart from the send and forgotten (sendmail/sending/secrets.py), in memory and on
Azurite's Table service, with a clock the tests move: weekly data keys, dropped once unused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from sendmail.sending.sealing import Sealer, new_key
from sendmail.sending.secrets import (
    KEYS_TABLE,
    SECRETS_TABLE,
    MemoryRows,
    SecretGone,
    SecretStore,
    SecretStoreError,
    TableRows,
    secret_store_from_environment,
)
from tests.support.azurite import Azurite, fresh_table

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
PASSWORD = SecretStr("앱-비밀번호-app-password")


def sealer_of(key: str) -> Any:
    sealer = Sealer(SecretStr(key))
    return lambda: sealer


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["memory", "azurite"])
def rows(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    if request.param == "memory":
        return MemoryRows(), MemoryRows()
    azurite: Azurite = request.getfixturevalue("azurite")
    return (
        TableRows(fresh_table(azurite, "secrets"), "secret"),
        TableRows(fresh_table(azurite, "sealkeys"), "key"),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(rows: tuple[Any, Any], clock: Clock) -> SecretStore:
    return SecretStore(rows[0], rows[1], sealer_of(new_key()), clock=clock)


def test_a_secret_is_read_back_until_it_is_deleted(store: SecretStore) -> None:
    store.put("send-1", PASSWORD)
    assert store.get("send-1").get_secret_value() == PASSWORD.get_secret_value()
    store.delete("send-1")
    store.delete("send-1")  # twice: harmless
    with pytest.raises(SecretGone):
        store.get("send-1")
    with pytest.raises(SecretGone):
        store.get("never-stored")


def test_nothing_stored_holds_the_password_or_an_unwrapped_key(
    store: SecretStore, rows: tuple[Any, Any]
) -> None:
    store.put("send-1", PASSWORD)
    stored = repr([*rows[0].all(), *rows[1].all()])
    assert PASSWORD.get_secret_value() not in stored
    assert "app-password" not in stored


def test_a_secret_nobody_deleted_expires_and_is_pruned(
    store: SecretStore, clock: Clock, rows: tuple[Any, Any]
) -> None:
    store.put("send-1", PASSWORD)
    clock.now += timedelta(days=7)
    with pytest.raises(SecretGone):
        store.get("send-1")
    assert store.prune().secrets == 1
    assert list(rows[0].all()) == []


def test_data_keys_rotate_weekly_and_are_dropped_once_no_secret_needs_them(
    store: SecretStore, clock: Clock, rows: tuple[Any, Any]
) -> None:
    """Found by the security review: one key forever, and a sealed token readable for ever by
    whoever holds it. Now a data key seals for a week, and once no stored secret uses it, it
    is dropped — and with it, any copy of what it sealed."""
    store.put("scheduled", PASSWORD, expires=T0 + timedelta(days=30))  # waits weeks
    store.put("short", PASSWORD)
    [first] = store.key_ids()
    copy = rows[0].get("short")  # what a backup or a snapshot would keep

    clock.now = T0 + timedelta(days=8)
    store.put("later", PASSWORD)
    assert len(store.key_ids()) == 2  # rotated: a new key seals from now on
    store.delete("short")
    assert store.prune().keys == 0  # the scheduled send's secret still needs the first key
    assert store.get("scheduled").get_secret_value() == PASSWORD.get_secret_value()

    store.delete("scheduled")  # its send ran
    assert store.prune().keys == 1
    assert first not in store.key_ids()
    assert store.get("later").get_secret_value() == PASSWORD.get_secret_value()
    rows[0].put("short", {k: copy[k] for k in ("KeyId", "Token", "ExpiresAt")})  # restored
    with pytest.raises(SecretGone):
        store.get("short")  # its key is gone: the copy opens no more, whatever key is held


def test_a_key_no_configured_sealing_key_opens_is_replaced(
    rows: tuple[Any, Any], clock: Clock
) -> None:
    """The configured sealing key was changed without keeping the old one: secrets sealed
    before are gone (their sends fail SMTP_ERROR), new ones get a new data key."""
    before = SecretStore(rows[0], rows[1], sealer_of(new_key()), clock=clock)
    before.put("old", PASSWORD)
    after = SecretStore(rows[0], rows[1], sealer_of(new_key()), clock=clock)
    with pytest.raises(SecretGone):
        after.get("old")
    after.put("new", PASSWORD)
    assert after.get("new").get_secret_value() == PASSWORD.get_secret_value()


def test_no_storage_is_a_store_error() -> None:
    with pytest.raises(SecretStoreError):
        secret_store_from_environment(sealer_of(new_key()), {})
    assert (SECRETS_TABLE, KEYS_TABLE) == ("SendMailSecrets", "SendMailSealingKeys")
