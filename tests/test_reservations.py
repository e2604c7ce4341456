"""Quota reservations: the arithmetic, and the table's atomic parts on a real Azurite."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sendmail.admission.reservations import (
    LIFETIME,
    MemoryReservations,
    QuotaReservations,
    TableReservations,
    check_room,
)
from sendmail.contract.errors import QuotaExceeded
from tests.support.azurite import fresh_table

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("needed", "limit", "sent", "outstanding", "fits"),
    [
        (100, 1000, 0, 0, True),
        (1000, 1000, 0, 0, True),
        (1001, 1000, 0, 0, False),
        (500, 1000, 400, 100, True),  # exactly what is left
        (501, 1000, 400, 100, False),
        (1, 1000, 1200, 0, False),  # SES counted more than the quota (overdrawn)
    ],
)
def test_a_send_fits_what_is_left_after_what_ses_counted_and_what_is_reserved(
    needed: int, limit: float, sent: float, outstanding: int, fits: bool
) -> None:
    if fits:
        check_room(needed, limit, sent, outstanding)
    else:
        with pytest.raises(QuotaExceeded):
            check_room(needed, limit, sent, outstanding)


def test_the_429_says_what_running_sends_hold() -> None:
    with pytest.raises(QuotaExceeded, match="once the 300 reserved by sends still running") as e:
        check_room(500, 1000, 400, 300)
    assert int(e.value.headers["Retry-After"]) > 0
    with pytest.raises(QuotaExceeded, match="the SES 24-hour quota is 1000; split it"):
        check_room(1500, 1000, 0, 0)


@pytest.fixture(params=["memory", "table"])
def reservations(request: pytest.FixtureRequest) -> QuotaReservations:
    if request.param == "memory":
        return MemoryReservations()
    azurite = request.getfixturevalue("azurite")
    table = fresh_table(azurite, "Quota")
    return TableReservations(table)


def test_two_sends_that_fit_one_at_a_time_but_not_together(
    reservations: QuotaReservations,
) -> None:
    reservations.reserve("first", 600, 1000, 0, T0)
    with pytest.raises(QuotaExceeded):
        reservations.reserve("second", 600, 1000, 0, T0)
    reservations.reserve("third", 400, 1000, 0, T0)  # what is left still fits


def test_what_a_send_settled_is_counted_by_ses_not_twice(reservations: QuotaReservations) -> None:
    reservations.reserve("first", 600, 1000, 0, T0)
    reservations.settle("first", 500)  # sent: SES now counts them in SentLast24Hours
    reservations.reserve("second", 400, 1000, 500, T0)  # 500 counted + 100 reserved + 400


def test_a_released_send_frees_what_it_did_not_use(reservations: QuotaReservations) -> None:
    reservations.reserve("first", 900, 1000, 0, T0)
    reservations.settle("first", 100)
    reservations.release("first")
    reservations.reserve("second", 900, 1000, 100, T0)


def test_a_reservation_older_than_a_day_holds_nothing(reservations: QuotaReservations) -> None:
    reservations.reserve("forgotten", 1000, 1000, 0, T0)
    reservations.reserve("next", 1000, 1000, 0, T0 + LIFETIME + timedelta(seconds=1))


def test_concurrent_admissions_never_together_exceed_the_quota(
    reservations: QuotaReservations,
) -> None:
    """Ten sends of 300 against a quota of 1000, all at once: exactly three are admitted."""
    admitted: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(10)

    def admit(n: int) -> None:
        barrier.wait()
        try:
            reservations.reserve(f"send{n}", 300, 1000, 0, T0)
            admitted.append(f"send{n}")
        except QuotaExceeded:
            refused.append(f"send{n}")

    threads = [threading.Thread(target=admit, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert (len(admitted), len(refused)) == (3, 7)


def test_the_table_holds_counts_only(azurite: Any) -> None:
    table = fresh_table(azurite, "Quota")
    store = TableReservations(table)
    store.reserve("send1", 10, 1000, 0, T0)
    store.settle("send1", 4)
    rows = {r["RowKey"]: dict(r) for r in table.list_entities()}
    assert set(rows) == {"admissions", "send1"}
    assert (rows["send1"]["Count"], rows["send1"]["Remaining"]) == (10, 6)
    store.reserve("send2", 10, 1000, 0, T0 + LIFETIME + timedelta(seconds=1))
    assert {r["RowKey"] for r in table.list_entities()} == {"admissions", "send2"}  # stale gone
