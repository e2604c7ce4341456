"""``GET /api/v1/emails/{id}/recipients``: every recipient of a send and its outcome, a page at a
time, called as the host calls it (the paging itself: test_recipients.py).

A send is faked as its lanes leave it: the list in the blob store, the record in the sends table,
each outcome in the ledger under its batch's key (tests/support/http.py). Every answer is also
held to the OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from api.emails import DEFAULT_RECIPIENTS_PAGE, MAX_RECIPIENTS_PAGE
from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from sendmail.sending.recipients import UNKNOWN_MESSAGE, encode_cursor
from tests.support import http
from tests.support.durable import FakeDurableClient, status
from tests.support.http import BASE, Outcome, finished, store_finished
from tests.test_openapi import fetch_document, response_validator

ROUTE = "/v1/emails/{id}/recipients"


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


@pytest.fixture
def document(app_functions: dict[str, Any]) -> dict[str, Any]:
    return fetch_document(app_functions)


def get(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    instance_id: str,
    **params: str,
) -> func.HttpResponse:
    return http.call(
        app_functions,
        "email_recipients",
        f"/api/v1/emails/{instance_id}/recipients",
        params=params,
        route_params={"id": instance_id},
        client=client,
    )


def page(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    document: dict[str, Any],
    instance_id: str,
    **params: str,
) -> Any:
    """A 200 page, checked against the document."""
    response = get(app_functions, client, instance_id, **params)
    assert response.status_code == 200, response.get_body()[:300]
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    response_validator(document, ROUTE, "get", 200).validate(body)
    return body


def refused(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    document: dict[str, Any],
    instance_id: str,
    status_code: int,
    **params: str,
) -> dict[str, Any]:
    """An error answer: the v1 envelope, as documented."""
    response = get(app_functions, client, instance_id, **params)
    assert response.status_code == status_code, response.get_body()[:300]
    envelope: dict[str, Any] = json.loads(response.get_body())
    response_validator(document, ROUTE, "get", status_code).validate(envelope)
    assert set(envelope) == {"timestamp", "status", "error", "message", "path"}
    assert envelope["status"] == status_code
    assert envelope["path"] == f"/api/v1/emails/{instance_id}/recipients"
    return envelope


def addresses(count: int) -> list[str]:
    return [f"user{i:05d}@example.com" for i in range(count)]


def mixed(index: int) -> Outcome:
    """Sent, failed, and not decided, in turn."""
    return (f"<m{index}@ses>", ("SES_MESSAGE_REJECTED", f"rejected {index}"), None)[index % 3]


def running(instance_id: str, kind: str = "ses") -> Any:
    name = SES_ORCHESTRATOR if kind == "ses" else SMTP_ORCHESTRATOR
    return status(instance_id, name, "Running", custom_status={"total": 1, "lanes": 1})


def emails(body: dict[str, Any]) -> list[str]:
    return [r["email"] for r in body["recipients"]]


def walk(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    document: dict[str, Any],
    instance_id: str,
    **params: str,
) -> tuple[list[dict[str, Any]], int]:
    """Every recipient, following nextCursor to the last page; (recipients, pages)."""
    seen: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        extra = {"cursor": cursor} if cursor is not None else {}
        body = page(app_functions, client, document, instance_id, **params, **extra)
        pages += 1
        seen += body["recipients"]
        cursor = body.get("nextCursor")
        if cursor is None:
            return seen, pages
        assert pages < 1000, "the cursor never ends"


# --- a page -----------------------------------------------------------------------------------


def test_a_page_shows_each_recipient_with_its_outcome_in_request_order(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    recipients = ["first@example.com", "Second@Example.com", "用户@例子.广告", "last@example.com"]
    outcomes: dict[int, Outcome] = {
        0: "<m0@ses>",
        1: ("SUPPRESSED", "The address is on the suppression list."),
        3: "<m3@ses>",
    }
    store_finished("s1", recipients, outcomes, lanes=2, batch_size=1)
    client.statuses["s1"] = [running("s1")]

    body = page(app_functions, client, document, "s1")

    assert body == {
        "id": "s1",
        "recipients": [
            {"email": "first@example.com", "status": "sent", "messageId": "<m0@ses>"},
            {
                "email": "Second@Example.com",  # as the request spelled it
                "status": "failed",
                "code": "SUPPRESSED",
                "message": "The address is on the suppression list.",
            },
            {"email": "用户@例子.广告", "status": "pending"},
            {"email": "last@example.com", "status": "sent", "messageId": "<m3@ses>"},
        ],
    }
    assert client.status_reads == [("s1", False)]  # the input is never read


def test_the_order_is_the_requests_across_lanes_and_batches(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    """Three lanes of batches of 4 (12 ledger partitions, out of step with the pages)."""
    recipients = addresses(37)
    client.statuses["s1"] = [
        finished("s1", recipients, {i: mixed(i) for i in range(37)}, lanes=3, batch_size=4)
    ]
    body = page(app_functions, client, document, "s1", limit="37")
    assert emails(body) == recipients
    assert [r.get("messageId") for r in body["recipients"]] == [
        f"<m{i}@ses>" if i % 3 == 0 else None for i in range(37)
    ]
    assert [r.get("message") for r in body["recipients"]][1:6:3] == ["rejected 1", "rejected 4"]
    assert "nextCursor" not in body


def test_the_default_page_is_100_recipients_and_a_page_holds_at_most_1000(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    assert (DEFAULT_RECIPIENTS_PAGE, MAX_RECIPIENTS_PAGE) == (100, 1000)
    recipients = addresses(2500)
    client.statuses["s1"] = [
        finished("s1", recipients, {i: f"<m{i}@ses>" for i in range(2500)}, lanes=4, batch_size=840)
    ]

    default = page(app_functions, client, document, "s1")
    largest = page(app_functions, client, document, "s1", limit="1000")
    one = page(app_functions, client, document, "s1", limit="1")

    assert emails(default) == recipients[:100]
    assert emails(largest) == recipients[:1000]
    assert emails(one) == recipients[:1]
    assert {"nextCursor"} <= set(default) & set(largest) & set(one)
    # the documented bounds are the route's
    parameters = {p["name"]: p["schema"] for p in document["paths"][ROUTE]["get"]["parameters"]}
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 1000)


@pytest.mark.parametrize(("limit", "pages"), [("7", 8), ("100", 1), ("50", 1), ("49", 2)])
def test_next_cursor_walks_every_recipient_once_to_the_end(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    document: dict[str, Any],
    limit: str,
    pages: int,
) -> None:
    recipients = addresses(50)
    client.statuses["s1"] = [
        finished("s1", recipients, {i: mixed(i) for i in range(50)}, lanes=2, batch_size=6)
    ]
    seen, walked = walk(app_functions, client, document, "s1", limit=limit)
    assert [r["email"] for r in seen] == recipients
    assert walked == pages


def test_a_status_filter_walks_exactly_the_recipients_with_that_status(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    """A filtered page looks at no more than ten pages' worth: over a long run of others it is
    short (even empty) and still has a nextCursor; the walk finds every match once, in order."""
    recipients = addresses(300)
    outcomes: dict[int, Outcome] = {
        i: ("SES_MESSAGE_REJECTED", "no") if i in (3, 4, 250, 299) else f"<m{i}@ses>"
        for i in range(300)
    }
    outcomes[100] = None
    client.statuses["s1"] = [finished("s1", recipients, outcomes, lanes=2, batch_size=40)]

    first = page(app_functions, client, document, "s1", status="failed", limit="2")
    assert emails(first) == [recipients[3], recipients[4]]
    assert "nextCursor" in first
    after = first["nextCursor"]
    empty = page(app_functions, client, document, "s1", status="failed", limit="2", cursor=after)
    assert empty["recipients"] == []  # 5 .. 24 looked at: none failed
    assert "nextCursor" in empty

    failed, _ = walk(app_functions, client, document, "s1", status="failed", limit="2")
    assert [r["email"] for r in failed] == [recipients[i] for i in (3, 4, 100, 250, 299)]
    assert {r["status"] for r in failed} == {"failed"}
    sent, _ = walk(app_functions, client, document, "s1", status="sent", limit="1000")
    assert len(sent) == 295
    assert {r["status"] for r in sent} == {"sent"}
    pending, _ = walk(app_functions, client, document, "s1", status="pending")
    assert pending == []  # the send is over: nothing is pending


def test_a_finished_send_shows_undecided_recipients_as_failed_and_a_running_one_as_pending(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    recipients = ["a@example.com", "b@example.com"]
    store_finished("run", recipients, {0: "<m0@ses>"})
    client.statuses["run"] = [running("run")]
    client.statuses["done"] = [finished("done", recipients, {0: "<m0@ses>"})]
    store_finished("ended", recipients, {0: "<m0@ses>"})
    client.statuses["ended"] = [status("ended", SES_ORCHESTRATOR, "Terminated")]

    assert page(app_functions, client, document, "run")["recipients"][1] == {
        "email": "b@example.com",
        "status": "pending",
    }
    for over in ("done", "ended"):
        assert page(app_functions, client, document, over)["recipients"] == [
            {"email": "a@example.com", "status": "sent", "messageId": "<m0@ses>"},
            {
                "email": "b@example.com",
                "status": "failed",
                "code": "DELIVERY_UNKNOWN",
                "message": UNKNOWN_MESSAGE,
            },
        ]
    assert page(app_functions, client, document, "run", status="pending")["recipients"] == [
        {"email": "b@example.com", "status": "pending"}
    ]


def test_an_smtp_send_pages_the_same_way(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    recipients = addresses(5)
    outcomes: dict[int, Outcome] = {i: f"<s{i}@smtp>" for i in range(4)}
    outcomes[4] = ("SMTP_RECIPIENT_REFUSED", "550 no such user")
    client.statuses["s1"] = [finished("s1", recipients, outcomes, kind="smtp", lanes=3)]
    body = page(app_functions, client, document, "s1")
    assert emails(body) == recipients
    assert body["recipients"][4]["code"] == "SMTP_RECIPIENT_REFUSED"


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "abc"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "-1"}, "limit must be an integer from 1 to 1000"),
        ({"limit": ""}, "limit must be an integer from 1 to 1000"),
        ({"limit": "\uff11\uff10"}, "limit must be an integer from 1 to 1000"),  # full-width 10
        ({"status": "bogus"}, "status must be one of sent, failed, canceled, pending"),
        ({"status": "Sent"}, "status must be one of sent, failed, canceled, pending"),
        ({"cursor": ""}, "cursor must be a nextCursor this service gave"),
        ({"cursor": "garbage!"}, "cursor must be a nextCursor this service gave"),
        ({"cursor": "cjEuMTA"}, "cursor must be a nextCursor this service gave"),  # "r1.10"
        ({"cursor": encode_cursor(0)}, "cursor must be a nextCursor this service gave"),
        ({"cursor": "ZToyMDI2MTEyOVQx"}, "cursor must be a nextCursor this service gave"),
    ],
)
def test_a_bad_query_is_400_in_the_envelope(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    document: dict[str, Any],
    params: dict[str, str],
    problem: str,
) -> None:
    client.statuses["s1"] = [finished("s1")]  # two recipients: "r1.10" is past its end
    envelope = refused(app_functions, client, document, "s1", 400, **params)
    assert envelope["error"] == "Bad Request"
    assert problem in envelope["message"]


def test_every_bad_parameter_is_named_at_once(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    client.statuses["s1"] = [finished("s1")]
    envelope = refused(app_functions, client, document, "s1", 400, limit="0", status="x")
    assert "limit must be" in envelope["message"]
    assert "status must be" in envelope["message"]


def test_a_cursor_of_a_larger_send_is_refused_by_a_smaller_one(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    client.statuses["big"] = [finished("big", addresses(30), {})]
    client.statuses["small"] = [finished("small", addresses(5), {})]
    cursor = page(app_functions, client, document, "big", limit="10")["nextCursor"]
    assert emails(page(app_functions, client, document, "big", cursor=cursor, limit="1")) == [
        addresses(30)[10]
    ]
    refused(app_functions, client, document, "small", 400, cursor=cursor)


@pytest.mark.parametrize("instance_id", ["nope", "../../etc", "x" * 101, ""])
def test_an_unknown_send_is_404(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    document: dict[str, Any],
    instance_id: str,
) -> None:
    envelope = refused(app_functions, client, document, instance_id, 404)
    assert envelope["error"] == "Not Found"


def test_a_send_without_a_record_a_lane_and_a_foreign_orchestration_are_404(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    """Only a send of this service with a stored list has recipients here: not one whose record
    is missing, not a lane (it shares the send's list), not another orchestration's instance
    with the same id as a stored list."""
    client.statuses["norecord"] = [status("norecord", SES_ORCHESTRATOR, "Completed")]
    store_finished("lane", ["a@example.com"], {0: "<m0@ses>"})
    client.statuses["lane"] = [status("lane", LANE_ORCHESTRATOR, "Running")]
    store_finished("other", ["a@example.com"], {0: "<m0@ses>"})
    client.statuses["other"] = [status("other", "some_other_orchestrator", "Completed")]
    for instance_id in ("norecord", "lane", "other"):
        envelope = refused(app_functions, client, document, instance_id, 404)
        assert instance_id in envelope["message"]


def test_the_status_route_links_here(
    app_functions: dict[str, Any], client: FakeDurableClient, document: dict[str, Any]
) -> None:
    client.statuses["s1"] = [finished("s1")]
    response = http.call(
        app_functions,
        "email_status",
        "/api/v1/emails/s1",
        route_params={"id": "s1"},
        client=client,
    )
    link = json.loads(response.get_body())["recipientsUrl"]
    assert link == f"{BASE}/api/v1/emails/s1/recipients"
    assert link.removeprefix(BASE).removeprefix("/api") == ROUTE.replace("{id}", "s1")
    assert emails(page(app_functions, client, document, "s1")) == [
        "a@example.com",
        "b@example.com",
    ]
