"""Every recipient's outcome, a page at a time, from the ledger and the stored list
(sendmail/sending/recipients.py), for a send of several lanes and batches."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sendmail.contract.vocabulary import FailureCode
from sendmail.platform.blobs import MemoryBlobStore
from sendmail.sending.control import CANCELED_MESSAGE
from sendmail.sending.jobs import Mail, batch_bounds, ledger_key
from sendmail.sending.ledger import MemorySendLedger, Recorded, SendLedger
from sendmail.sending.lists import StoredSend, store_send
from sendmail.sending.recipients import (
    SCAN_PAGES,
    UNKNOWN_MESSAGE,
    WINDOW,
    Page,
    RecipientOutcome,
    Status,
    decode_cursor,
    encode_cursor,
    outcomes,
    page,
)
from sendmail.sending.sends import SendRecord

SEND = "send-2537"
TOTAL, LANES, SIZE = 2537, 3, 400
RECORD = SendRecord(
    id=SEND,
    kind="ses",
    total=TOTAL,
    lanes=LANES,
    batch_size=SIZE,
    list_ref=SEND,
    created=datetime(2025, 7, 2, tzinfo=UTC),
)
ADDRESSES = [f"r{i:04d}@example.com" if i % 250 else f"用户{i}@例子.广告" for i in range(TOTAL)]


def status_of(index: int) -> Status:
    """The send's outcomes: a long run of successes (800 in a row, across batches and lanes),
    elsewhere a failure every 5, two sent, two not decided yet."""
    if 1000 <= index < 1800:
        return "sent"
    return ("failed", "sent", "sent", "pending", "pending")[index % 5]


def message_id(index: int) -> str:
    return f"<m{index}@mail.example>"


def _fill(ledger: SendLedger) -> None:
    for start, count in batch_bounds(TOTAL, LANES, SIZE):
        key = ledger_key(SEND, start)
        indices = range(start, start + count)
        sent = {i - start: message_id(i) for i in indices if status_of(i) == "sent"}
        failed = {
            i - start: ("SES_MESSAGE_REJECTED", f"rejected {i}")
            for i in indices
            if status_of(i) == "failed"
        }
        ledger.record_many(key, sent)
        ledger.record_failures(key, failed)


@pytest.fixture(scope="module")
def ledger() -> MemorySendLedger:
    filled = MemorySendLedger()
    _fill(filled)
    return filled


@pytest.fixture(scope="module")
def stored() -> StoredSend:
    store = MemoryBlobStore()
    store_send(store, SEND, ADDRESSES, Mail(sender="a@example.com", subject="s", body="b"))
    return StoredSend(store, SEND)


def walk(
    ledger: SendLedger,
    stored: StoredSend,
    limit: int,
    status: Status | None = None,
    *,
    finished: bool = False,
) -> list[Page]:
    pages: list[Page] = []
    cursor: str | None = None
    for _ in range(TOTAL + 1):
        current = page(
            RECORD, ledger, stored, limit=limit, cursor=cursor, status=status, finished=finished
        )
        pages.append(current)
        assert len(current.recipients) <= limit
        if current.cursor is None:
            return pages
        cursor = current.cursor
    raise AssertionError("the pages never ended")


def _indices(pages: list[Page]) -> list[int]:
    return [r.index for p in pages for r in p.recipients]


# --- every recipient once, in order ---------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 7, 43, 100, 1000])
def test_every_recipient_is_listed_once_in_request_order(
    ledger: SendLedger, stored: StoredSend, limit: int
) -> None:
    pages = walk(ledger, stored, limit)

    assert _indices(pages) == list(range(TOTAL))
    assert [r.email for p in pages for r in p.recipients] == ADDRESSES
    assert [r.status for p in pages for r in p.recipients] == [status_of(i) for i in range(TOTAL)]
    assert len(pages) == math.ceil(TOTAL / limit)  # 2537 = 43 * 59: no empty page at the end
    assert all(len(p.recipients) == limit for p in pages[:-1])
    assert all(p.cursor is not None for p in pages[:-1])
    assert pages[-1].cursor is None
    assert pages[-1].recipients


def test_one_page_for_the_whole_send_has_no_cursor(ledger: SendLedger, stored: StoredSend) -> None:
    whole = page(RECORD, ledger, stored, limit=TOTAL, finished=False)
    assert [r.index for r in whole.recipients] == list(range(TOTAL))
    assert whole.cursor is None


def test_rows_carry_what_the_ledger_holds(ledger: SendLedger, stored: StoredSend) -> None:
    first = page(RECORD, ledger, stored, limit=5, finished=False)
    assert [r.to_json() for r in first.recipients] == [
        {
            "email": "用户0@例子.广告",
            "status": "failed",
            "code": "SES_MESSAGE_REJECTED",
            "message": "rejected 0",
        },
        {"email": "r0001@example.com", "status": "sent", "messageId": message_id(1)},
        {"email": "r0002@example.com", "status": "sent", "messageId": message_id(2)},
        {"email": "r0003@example.com", "status": "pending"},
        {"email": "r0004@example.com", "status": "pending"},
    ]
    # deep in the third lane, across a batch boundary (2092 starts a batch)
    deep = page(RECORD, ledger, stored, limit=4, cursor=encode_cursor(2090), finished=False)
    assert [r.to_json() for r in deep.recipients] == [
        {"email": "r2090@example.com", "status": "failed", "code": "SES_MESSAGE_REJECTED",
         "message": "rejected 2090"},
        {"email": "r2091@example.com", "status": "sent", "messageId": message_id(2091)},
        {"email": "r2092@example.com", "status": "sent", "messageId": message_id(2092)},
        {"email": "r2093@example.com", "status": "pending"},
    ]  # fmt: skip
    assert deep.cursor == encode_cursor(2094)


def test_a_row_sent_after_a_failure_was_merged_is_sent(stored: StoredSend) -> None:
    ledger = MemorySendLedger()
    key = ledger_key(SEND, 846)
    ledger.record(key, 3, "<late@mail.example>")
    ledger.record_failures(key, {3: ("BATCH_FAILED", "kept failing"), 4: ("BATCH_FAILED", "x")})

    rows = page(RECORD, ledger, stored, limit=2, cursor=encode_cursor(849), finished=True)

    assert [(r.index, r.status, r.message_id, r.code) for r in rows.recipients] == [
        (849, "sent", "<late@mail.example>", None),
        (850, "failed", None, "BATCH_FAILED"),
    ]


# --- status filters -------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["sent", "failed", "pending"])
@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
def test_a_status_filter_walked_to_the_end_gives_exactly_that_status(
    ledger: SendLedger, stored: StoredSend, status: Status, limit: int
) -> None:
    pages = walk(ledger, stored, limit, status)

    assert _indices(pages) == [i for i in range(TOTAL) if status_of(i) == status]
    assert {r.status for p in pages for r in p.recipients} == {status}
    assert pages[-1].cursor is None


def test_a_filtered_page_may_be_short_and_still_have_a_cursor(
    ledger: SendLedger, stored: StoredSend
) -> None:
    """800 successes in a row from 1000 on: a page of failures looks at SCAN_PAGES * limit
    recipients at most and says where to look next."""
    empty = page(
        RECORD, ledger, stored, limit=7, cursor=encode_cursor(1000), status="failed", finished=False
    )
    assert empty.recipients == []
    assert empty.cursor == encode_cursor(1000 + 7 * SCAN_PAGES)

    short = page(
        RECORD, ledger, stored, limit=7, cursor=encode_cursor(1760), status="failed", finished=False
    )
    assert [r.index for r in short.recipients] == [1800, 1805, 1810, 1815, 1820, 1825]
    assert short.cursor == encode_cursor(1760 + 7 * SCAN_PAGES)


def test_a_full_filtered_page_ends_after_its_last_match(
    ledger: SendLedger, stored: StoredSend
) -> None:
    full = page(RECORD, ledger, stored, limit=3, status="pending", finished=False)
    assert [r.index for r in full.recipients] == [3, 4, 8]
    assert full.cursor == encode_cursor(9)


def test_a_filtered_page_that_reaches_the_end_has_no_cursor(
    ledger: SendLedger, stored: StoredSend
) -> None:
    last = page(
        RECORD, ledger, stored, limit=100, cursor=encode_cursor(2530), status="sent", finished=False
    )
    assert [r.index for r in last.recipients] == [2531, 2532, 2536]
    assert last.cursor is None
    # a full page whose last match is the send's last recipient: nothing after it either
    full = page(
        RECORD, ledger, stored, limit=1, cursor=encode_cursor(2536), status="sent", finished=False
    )
    assert [r.index for r in full.recipients] == [2536]
    assert full.cursor is None
    # the last failure is the last-but-one recipient: the page stops after it
    failed = page(
        RECORD, ledger, stored, limit=1, cursor=encode_cursor(2531), status="failed", finished=False
    )
    assert [r.index for r in failed.recipients] == [2535]
    assert failed.cursor == encode_cursor(2536)


# --- a finished send ------------------------------------------------------------------------------
def test_once_finished_the_undecided_are_failed_as_delivery_unknown(
    ledger: SendLedger, stored: StoredSend
) -> None:
    pages = walk(ledger, stored, 100, finished=True)
    rows = [r for p in pages for r in p.recipients]

    assert [r.index for r in rows] == list(range(TOTAL))
    for row in rows:
        if status_of(row.index) == "pending":
            assert (row.status, row.code, row.message) == (
                "failed",
                "DELIVERY_UNKNOWN",
                UNKNOWN_MESSAGE,
            )
            assert row.message_id is None
        else:
            assert row.status == status_of(row.index)
    assert walk(ledger, stored, 100, "pending", finished=True)[-1].recipients == []
    assert all(not p.recipients for p in walk(ledger, stored, 100, "pending", finished=True))
    failed = _indices(walk(ledger, stored, 100, "failed", finished=True))
    assert failed == [i for i in range(TOTAL) if status_of(i) != "sent"]


def test_a_send_with_no_outcome_at_all(stored: StoredSend) -> None:
    running = page(RECORD, MemorySendLedger(), stored, limit=3, finished=False)
    assert [r.to_json() for r in running.recipients] == [
        {"email": "用户0@例子.广告", "status": "pending"},
        {"email": "r0001@example.com", "status": "pending"},
        {"email": "r0002@example.com", "status": "pending"},
    ]
    over = page(RECORD, MemorySendLedger(), stored, limit=1, finished=True)
    assert over.recipients[0].to_json() == {
        "email": "用户0@例子.广告",
        "status": "failed",
        "code": "DELIVERY_UNKNOWN",
        "message": UNKNOWN_MESSAGE,
    }


def test_canceled_rows_are_canceled_and_the_undecided_of_a_canceled_send_stay_unknown(
    stored: StoredSend,
) -> None:
    """A cancel writes CANCELED rows for what was not sent: those are ``canceled``. A recipient
    with no row in a send canceled while running is still DELIVERY_UNKNOWN (its batch's ledger
    could not be written): only a send canceled before it started has no rows at all."""
    ledger = MemorySendLedger()
    key = ledger_key(SEND, 0)
    ledger.record_many(key, {0: message_id(0)})
    ledger.record_failures(key, {1: (FailureCode.CANCELED.value, CANCELED_MESSAGE)})
    canceled = replace(RECORD, control="canceled", finished=RECORD.created, canceled=1)

    shown = page(canceled, ledger, stored, limit=3, finished=True).recipients

    assert [(r.status, r.code) for r in shown] == [
        ("sent", None),
        ("canceled", "CANCELED"),
        ("failed", "DELIVERY_UNKNOWN"),
    ]
    assert shown[1].to_json()["message"] == CANCELED_MESSAGE


def test_a_send_canceled_before_it_started_has_everyone_canceled(stored: StoredSend) -> None:
    before = replace(RECORD, control="canceled", finished=RECORD.created, canceled=TOTAL, sent=0)

    shown = page(before, MemorySendLedger(), stored, limit=2, status="canceled", finished=True)

    assert [r.to_json() for r in shown.recipients] == [
        {
            "email": ADDRESSES[i],
            "status": "canceled",
            "code": "CANCELED",
            "message": CANCELED_MESSAGE,
        }
        for i in range(2)
    ]


# --- cursors --------------------------------------------------------------------------------------
def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage!!",
        "cürsor",  # not ASCII
        "@@@@",
        "%%%",
        _b64("x1.5"),  # another prefix
        _b64("r2.5"),
        _b64("5"),  # no prefix
        _b64("r1."),
        _b64("r1.abc"),
        _b64("r1.-5"),
        _b64("r1.+5"),
        _b64("r1.5 "),
        _b64("r1.\uff15"),  # a full-width digit
        base64.urlsafe_b64encode(b"r1.\xff5").decode(),  # not ASCII
        encode_cursor(0),  # the first page has no cursor
        encode_cursor(TOTAL),  # out of range
        encode_cursor(10**12),
    ],
)
def test_a_cursor_this_module_did_not_give_is_refused(
    ledger: SendLedger, stored: StoredSend, cursor: str
) -> None:
    with pytest.raises(ValueError):
        decode_cursor(cursor, TOTAL)
    with pytest.raises(ValueError):
        page(RECORD, ledger, stored, limit=10, cursor=cursor, finished=False)


@pytest.mark.parametrize("index", [1, 2, 9, 10, 399, 400, 846, 999, 1000, 2536])
def test_a_cursor_round_trips_and_is_url_safe(index: int) -> None:
    cursor = encode_cursor(index)
    assert decode_cursor(cursor, TOTAL) == index
    assert not set(cursor) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor + "=" * (-len(cursor) % 4), TOTAL) == index  # padded: fine


def test_a_cursor_starts_the_page_at_its_recipient(ledger: SendLedger, stored: StoredSend) -> None:
    for index in (1, 399, 400, 845, 846, 1691, 1692, 2536):
        got = page(RECORD, ledger, stored, limit=2, cursor=encode_cursor(index), finished=False)
        assert got.recipients[0].index == index
        assert got.recipients[0].email == ADDRESSES[index]


# --- what a page reads ----------------------------------------------------------------------------
class CountingLedger(MemorySendLedger):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int, int | None]] = []

    def outcomes(self, key: str, first: int = 0, stop: int | None = None) -> dict[int, Recorded]:
        self.reads.append((key, first, stop))
        return super().outcomes(key, first, stop)


def test_a_page_reads_only_the_partitions_and_ranges_it_shows(stored: StoredSend) -> None:
    counting = CountingLedger()
    _fill(counting)
    bounds: Mapping[str, int] = {
        ledger_key(SEND, start): count for start, count in batch_bounds(TOTAL, LANES, SIZE)
    }

    got = page(RECORD, counting, stored, limit=100, cursor=encode_cursor(1200), finished=False)

    assert [r.index for r in got.recipients] == list(range(1200, 1300))
    # 1200..1299 lies in the batches starting at 846 (to 1245) and 1246: one read each
    assert counting.reads == [
        (ledger_key(SEND, 846), 354, 400),
        (ledger_key(SEND, 1246), 0, 54),
    ]
    for key, first, stop in counting.reads:
        assert stop is not None
        assert 0 <= first < stop <= bounds[key]


def test_outcomes_read_each_batch_once_however_many_windows_it_spans(
    stored: StoredSend,
) -> None:
    counting = CountingLedger()
    record = replace(RECORD, lanes=1, batch_size=TOTAL)  # one batch of the whole send
    rows = list(outcomes(record, counting, stored, finished=False, window=WINDOW))

    assert [r.index for r in rows] == list(range(TOTAL))
    assert counting.reads == [(ledger_key(SEND, 0), 0, TOTAL)]


def test_outcomes_of_a_range(ledger: SendLedger, stored: StoredSend) -> None:
    rows = list(outcomes(RECORD, ledger, stored, 395, 405, finished=False, window=3))
    assert [r.index for r in rows] == list(range(395, 405))
    assert rows == [
        RecipientOutcome(
            i,
            ADDRESSES[i],
            status_of(i),
            message_id=message_id(i) if status_of(i) == "sent" else None,
            code="SES_MESSAGE_REJECTED" if status_of(i) == "failed" else None,
            message=f"rejected {i}" if status_of(i) == "failed" else None,
        )
        for i in range(395, 405)
    ]
    assert list(outcomes(RECORD, ledger, stored, 2530, 10**6, finished=False))[-1].index == 2536
