"""The failed-login limit of user-send (sendmail/admission/logins.py), in memory and on
Azurite's Table service: what counts, what is never limited, and the hour it lasts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from sendmail.admission.logins import (
    TRY_TIMEOUT,
    LoginGuard,
    LoginGuardError,
    LoginSession,
    MemoryLoginGuard,
    TableLoginGuard,
    account_key,
    login_guard_from_environment,
)
from sendmail.contract.errors import QuotaExceeded
from tests.support.azurite import Azurite, fresh_table

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ACCOUNT = account_key("GMAIL", "victim@gmail.com")


@pytest.fixture(params=["memory", "azurite"])
def guard(request: pytest.FixtureRequest) -> LoginGuard:
    if request.param == "memory":
        return MemoryLoginGuard(limit=5)
    azurite: Azurite = request.getfixturevalue("azurite")
    return TableLoginGuard(fresh_table(azurite, "logins"), limit=5)


def fail(guard: LoginGuard, mac: str, at: datetime) -> None:
    guard.admit(ACCOUNT, mac, at)
    guard.record(ACCOUNT, mac, False, at)


def test_the_sixth_failed_login_in_an_hour_is_429_until_the_first_leaves_it(
    guard: LoginGuard,
) -> None:
    for n in range(5):
        fail(guard, f"guess-{n}", T0 + timedelta(minutes=n))
    with pytest.raises(QuotaExceeded) as refused:
        guard.admit(ACCOUNT, "guess-5", T0 + timedelta(minutes=10))
    # the first failure leaves the hour at T0 + 60 min: 50 minutes from now
    assert refused.value.retry_after == 50 * 60 + 1
    guard.admit(ACCOUNT, "guess-5", T0 + timedelta(minutes=60, seconds=1))


def test_a_refused_password_is_never_tried_again_within_the_hour(guard: LoginGuard) -> None:
    """The provider sees one refusal per wrong password: repeating it is answered from here
    (SMTP_AUTH_FAILED without a login) and counts once."""
    fail(guard, "wrong", T0)
    for n in range(10):
        guard.admit(ACCOUNT, "wrong", T0 + timedelta(minutes=n))  # admitted: it fails at once
        assert guard.begin(ACCOUNT, "wrong", T0 + timedelta(minutes=n)) == "refused"
    for n in range(3):
        fail(guard, f"guess-{n}", T0 + timedelta(minutes=20))
    guard.admit(ACCOUNT, "guess-3", T0 + timedelta(minutes=21))  # 4 refusals + 1: the fifth
    with pytest.raises(QuotaExceeded):
        guard.admit(ACCOUNT, "guess-4", T0 + timedelta(minutes=22))
    assert guard.begin(ACCOUNT, "wrong", T0 + timedelta(minutes=60, seconds=1)) == "go"


def test_one_login_per_password_at_a_time(guard: LoginGuard) -> None:
    """A send's parallel connections (and a burst of sends) with a password not yet proven:
    the first logs in, the others wait for its answer instead of trying too."""
    guard.admit(ACCOUNT, "new", T0)
    assert guard.begin(ACCOUNT, "new", T0) == "go"
    assert guard.begin(ACCOUNT, "new", T0) == "wait"
    guard.record(ACCOUNT, "new", False, T0 + timedelta(seconds=1))
    assert guard.begin(ACCOUNT, "new", T0 + timedelta(seconds=1)) == "refused"

    guard.admit(ACCOUNT, "right", T0)
    assert guard.begin(ACCOUNT, "right", T0) == "go"
    assert guard.begin(ACCOUNT, "right", T0) == "wait"
    guard.record(ACCOUNT, "right", True, T0 + timedelta(seconds=1))
    assert guard.begin(ACCOUNT, "right", T0 + timedelta(seconds=1)) == "go"
    assert guard.begin(ACCOUNT, "right", T0 + timedelta(seconds=2)) == "go"  # reconnects too


def test_a_login_never_answered_stops_holding_the_others_back(guard: LoginGuard) -> None:
    assert guard.begin(ACCOUNT, "new", T0) == "go"  # its activity dies before the answer
    assert guard.begin(ACCOUNT, "new", T0 + timedelta(seconds=100)) == "wait"
    assert guard.begin(ACCOUNT, "new", T0 + TRY_TIMEOUT + timedelta(seconds=1)) == "go"


def test_retry_after_is_when_the_account_is_back_under_the_limit(guard: LoginGuard) -> None:
    for n in range(7):  # two more than the limit (sends admitted at once, refused in turn):
        guard.record(ACCOUNT, f"guess-{n}", False, T0 + timedelta(minutes=n))  # three must go
    with pytest.raises(QuotaExceeded) as refused:
        guard.admit(ACCOUNT, "guess-7", T0 + timedelta(minutes=10))
    assert refused.value.retry_after == 52 * 60 + 1  # guess-2's failure leaves at T0 + 62 min


def test_a_burst_of_new_passwords_counts_before_any_reaches_the_provider(
    guard: LoginGuard,
) -> None:
    for n in range(5):
        guard.admit(ACCOUNT, f"guess-{n}", T0)  # admitted, not answered yet: pending
    with pytest.raises(QuotaExceeded):
        guard.admit(ACCOUNT, "guess-5", T0)
    guard.admit(ACCOUNT, "guess-0", T0)  # one already waiting for its answer: no new guess


def test_a_password_that_logged_in_is_never_limited(guard: LoginGuard) -> None:
    guard.admit(ACCOUNT, "right", T0)
    guard.record(ACCOUNT, "right", True, T0)
    for n in range(5):
        fail(guard, f"guess-{n}", T0 + timedelta(minutes=1))
    guard.admit(ACCOUNT, "right", T0 + timedelta(minutes=2))  # its owner keeps sending
    with pytest.raises(QuotaExceeded):
        guard.admit(ACCOUNT, "guess-5", T0 + timedelta(minutes=2))


def test_accounts_are_apart_and_stored_as_hashes(guard: LoginGuard) -> None:
    for n in range(5):
        fail(guard, f"guess-{n}", T0)
    guard.admit(account_key("GMAIL", "someone-else@gmail.com"), "guess-0", T0)
    guard.admit(account_key("NAVER", "victim@gmail.com"), "guess-0", T0)
    assert account_key("gmail", " Victim@Gmail.com ") == ACCOUNT
    # spellings of one Gmail account share its limit; other providers' addresses are as given
    assert account_key("GMAIL", "vic.tim+guess@googlemail.com") == ACCOUNT
    assert account_key("NAVER", "vic.tim@naver.com") != account_key("NAVER", "victim@naver.com")
    assert "victim" not in ACCOUNT


def test_concurrent_starters_never_admit_more_than_the_limit(azurite: Azurite) -> None:
    """Ten requests with ten new passwords at once, two guards (two workers) on one table: the
    row's ETag makes exactly five of them count and the other five refused."""
    table = fresh_table(azurite, "logins")
    guards = [TableLoginGuard(table, limit=5), TableLoginGuard(table, limit=5)]
    admitted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        try:
            guards[n % 2].admit(ACCOUNT, f"guess-{n}", T0)
        except QuotaExceeded:
            with lock:
                refused.append(f"guess-{n}")
        else:
            with lock:
                admitted.append(f"guess-{n}")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(admitted), len(refused)) == (5, 5)


def test_no_storage_is_a_guard_error() -> None:
    with pytest.raises(LoginGuardError):
        login_guard_from_environment(5, {})


def test_a_password_refused_after_it_logged_in_is_refused_from_then_on(
    guard: LoginGuard,
) -> None:
    """Revoked meanwhile: the latest answer holds, so it is not tried again and again."""
    guard.admit(ACCOUNT, "revoked", T0)
    assert guard.begin(ACCOUNT, "revoked", T0) == "go"
    guard.record(ACCOUNT, "revoked", True, T0)
    assert guard.begin(ACCOUNT, "revoked", T0 + timedelta(minutes=1)) == "go"  # proven
    guard.record(ACCOUNT, "revoked", False, T0 + timedelta(minutes=2))
    assert guard.begin(ACCOUNT, "revoked", T0 + timedelta(minutes=3)) == "refused"


def test_a_login_without_a_final_answer_is_released_for_the_others(guard: LoginGuard) -> None:
    assert guard.begin(ACCOUNT, "new", T0) == "go"
    assert guard.begin(ACCOUNT, "new", T0) == "wait"
    guard.release(ACCOUNT, "new", T0 + timedelta(seconds=1))  # a 4xx, a timeout: no answer
    assert guard.begin(ACCOUNT, "new", T0 + timedelta(seconds=1)) == "go"


# --- one connection's side: LoginSession ----------------------------------------------------


def test_a_session_waits_for_another_connections_answer_then_follows_it() -> None:
    guard = MemoryLoginGuard(limit=5)
    first = LoginSession(lambda: guard, ACCOUNT, "pw", clock=lambda: T0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # while the second waits, the first is answered
        waits.append(seconds)
        first.answered(False)

    second = LoginSession(lambda: guard, ACCOUNT, "pw", clock=lambda: T0, sleep=sleep)
    assert first.may_try() is True
    assert second.may_try() is False  # refused: it never reaches the provider
    assert len(waits) == 1


def test_a_session_retries_its_own_login_and_releases_it_unanswered() -> None:
    guard = MemoryLoginGuard(limit=5)
    session = LoginSession(lambda: guard, ACCOUNT, "pw", clock=lambda: T0)
    assert session.may_try() is True
    assert session.may_try() is True  # its own announced login (a retry after a 4xx)
    assert guard.begin(ACCOUNT, "pw", T0) == "wait"  # others wait for it
    session.close()  # no final answer came
    assert guard.begin(ACCOUNT, "pw", T0) == "go"


def test_a_guard_that_cannot_be_reached_never_stops_the_send() -> None:
    def unreachable() -> LoginGuard:
        raise LoginGuardError("no storage")

    session = LoginSession(unreachable, ACCOUNT, "pw")
    assert session.may_try() is True
    session.answered(True)
    session.close()
