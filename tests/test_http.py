"""The HTTP functions, called as the host calls them, with a recording Durable client.

202 + Location, ``Prefer: wait``, 403 and 429 decided before anything starts, an orchestration
input that holds neither the password nor the recipients nor the content (they are in the secret
store, the blob store and the sends table), the status route, and the v1 envelope for every error.
A finished send is faked as its lanes leave it: outcomes in the ledger, counts in the output
(tests/support/http.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import pytest

from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from sendmail import services
from sendmail.platform.blobs import MemoryBlobStore
from sendmail.platform.settings import get_settings
from sendmail.sending.jobs import Mail
from sendmail.sending.ledger import MemorySendLedger
from sendmail.sending.lists import StoredSend
from sendmail.sending.sealing import new_key
from sendmail.sending.sends import MemorySends
from sendmail.sending.ses import SendQuota
from tests.support import http
from tests.support.durable import FakeDurableClient, status
from tests.support.http import (
    BASE,
    FinishingClient,
    Outcome,
    StubQuota,
    completed,
    finished,
    record_outcomes,
    store_finished,
)


@pytest.fixture
def sealing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = new_key()
    monkeypatch.setenv("SENDMAIL_SEALING_KEY", key)
    return key


@pytest.fixture
def quota() -> StubQuota:
    stub = StubQuota()
    services.override(ses=stub)
    return stub


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


def call(
    app_functions: dict[str, Any],
    name: str,
    client: FakeDurableClient | None,
    *,
    method: str = "POST",
    path: str,
    **kwargs: Any,
) -> func.HttpResponse:
    return http.call(app_functions, name, path, method=method, client=client, **kwargs)


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


AWS = {
    "senderEmail": "se@aifactory.page",
    "recipientEmails": ["a@example.com", "B@example.com", "b@example.com"],
    "subject": "안녕하세요",
    "body": "본문입니다",
}
USER = {
    "provider": "GMAIL",
    "senderEmail": "me@gmail.com",
    "password": "app-password-123",
    "recipientEmails": ["friend@example.com"],
    "subject": "Hi",
    "body": "Long time no see!",
}


def assert_envelope(response: func.HttpResponse, status_code: int, path: str) -> dict[str, Any]:
    assert response.status_code == status_code
    assert response.mimetype == "application/json"
    envelope: dict[str, Any] = body_of(response)
    assert set(envelope) == {"timestamp", "status", "error", "message", "path"}
    assert envelope["status"] == status_code
    assert envelope["path"] == path
    assert envelope["timestamp"].endswith("Z")
    return envelope


def test_aws_send_starts_the_ses_orchestration_and_answers_202(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=AWS)

    assert response.status_code == 202
    [instance_id] = client.instance_ids
    assert response.headers["Location"] == f"{BASE}/api/v1/emails/{instance_id}"
    assert int(response.headers["Retry-After"]) > 0
    assert body_of(response) == {
        "id": instance_id,
        "kind": "ses",
        "runtimeStatus": "Pending",
        "total": 2,
        "statusUrl": f"{BASE}/api/v1/emails/{instance_id}",
    }
    [(name, job)] = client.started
    assert name == SES_ORCHESTRATOR
    assert job == {
        "kind": "ses",
        "listRef": instance_id,  # the list and the content are stored under the send's id
        "total": 2,
        "batchSize": 840,  # one lane, a minute of 14/s a batch
        "lanes": 1,
        "maxRate": 14,  # the account's MaxSendRate; the lanes share it
        # the setting's hour past the 1 s that 2 recipients need at 14/s
        # (jobs.send_deadline_seconds)
        "deadlineSeconds": 3601,
        "scheduledAt": None,
    }
    # No address and no content in the orchestration input (nor in its history): they are in
    # the blob store, read by each batch; the send's record is in the sends table.
    for text in ("a@example.com", "B@example.com", "안녕하세요", "본문입니다"):
        assert text not in json.dumps(job, ensure_ascii=False)
    stored = StoredSend(services.blobs(), instance_id)
    assert stored.recipients(0, stored.count()) == ["a@example.com", "B@example.com"]
    assert stored.mail() == Mail(
        sender="se@aifactory.page", subject="안녕하세요", body="본문입니다"
    )
    record = services.sends().get(instance_id)
    assert record is not None
    assert (record.kind, record.total, record.lanes, record.batch_size, record.list_ref) == (
        "ses",
        2,
        1,
        840,
        instance_id,
    )
    assert record.finished is None


def test_a_sender_that_is_not_allowed_is_403_and_nothing_starts(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    body = {**AWS, "senderEmail": "someone@elsewhere.example.com"}
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=body)
    envelope = assert_envelope(response, 403, "/api/v1/emails/aws-send")
    assert envelope["error"] == "Forbidden"
    assert "someone@elsewhere.example.com" in envelope["message"]
    assert client.started == []


@pytest.mark.parametrize("route", ["aws-send", "user-send"])
@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"senderEmail": "se@aifactory.page", "subject": ' + b"1" * 5_000 + b"}",
    ],
    ids=["nested-100000-deep", "5000-digit-integer"],
)
def test_json_that_crashes_the_parser_is_400_in_the_envelope(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    quota: StubQuota,
    route: str,
    raw: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the security review: these were 500s with a logged traceback."""
    name = route.replace("-", "_")
    path = f"/api/v1/emails/{route}"
    with caplog.at_level(logging.DEBUG):
        response = call(app_functions, name, client, path=path, body=raw)
    envelope = assert_envelope(response, 400, path)
    assert envelope["message"] == "Validation failed: the request body must be valid UTF-8 JSON"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert client.started == []


def test_a_sender_not_allowed_is_403_whatever_its_recipients(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    """The sender is checked before the recipients are validated (a 403 costs no validation)."""
    body = {**AWS, "senderEmail": "x@elsewhere.example.com", "recipientEmails": ["bad"] * 3}
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=body)
    assert assert_envelope(response, 403, "/api/v1/emails/aws-send")["error"] == "Forbidden"
    assert client.started == []


def test_allowed_domains_admit_every_address_at_them(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    quota: StubQuota,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDMAIL_ALLOWED_SENDER_DOMAINS", "Example.org")
    services.reset()
    services.override(
        ses=quota, ledger=MemorySendLedger(), blobs=MemoryBlobStore(), sends=MemorySends()
    )
    body = {**AWS, "senderEmail": "news@example.org"}
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=body)
    assert response.status_code == 202


def test_a_send_past_the_quota_is_429_with_retry_after_and_nothing_starts(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    quota.quota = SendQuota(max_24_hour_send=200, max_send_rate=1, sent_last_24_hours=199)
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=AWS)
    envelope = assert_envelope(response, 429, "/api/v1/emails/aws-send")
    assert envelope["error"] == "Too Many Requests"
    assert "only 1 are left" in envelope["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert client.started == []


def test_a_send_within_the_quota_is_admitted(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    quota.quota = SendQuota(max_24_hour_send=200, max_send_rate=1, sent_last_24_hours=198)
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=AWS)
    assert response.status_code == 202
    assert quota.reads == 1


def test_invalid_input_is_400_before_any_quota_read(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    response = call(
        app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=b"{oops"
    )
    envelope = assert_envelope(response, 400, "/api/v1/emails/aws-send")
    assert envelope["error"] == "Bad Request"
    assert envelope["message"] == "Validation failed: the request body must be valid UTF-8 JSON"
    assert quota.reads == 0
    assert client.started == []


def test_user_send_keeps_the_password_out_of_the_orchestration_input(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    sealing_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the security review: the sealed password rode in the orchestration input,
    readable for ever by whoever had the key. The input now names it in the secret store — and
    the recipients and the content too, in the blob store: the input (and so the Durable
    history) holds none of them."""
    caplog.set_level(logging.DEBUG)
    response = call(app_functions, "user_send", client, path="/api/v1/emails/user-send", body=USER)

    assert response.status_code == 202
    [(name, job)] = client.started
    [instance_id] = client.instance_ids
    assert name == SMTP_ORCHESTRATOR
    assert job == {
        "kind": "smtp",
        "listRef": instance_id,
        "total": 1,
        "provider": "GMAIL",
        "secretRef": instance_id,
        "connections": 1,  # the plan stored: one recipient, one connection (of up to 3)
        "scheduledAt": None,
    }
    for secret_or_content in ("app-password-123", "friend@example.com", "Long time no see!"):
        assert secret_or_content not in json.dumps(job)
    assert services.secrets().get(instance_id).get_secret_value() == "app-password-123"
    stored = StoredSend(services.blobs(), instance_id)
    assert stored.recipients(0, stored.count()) == ["friend@example.com"]
    assert stored.mail() == Mail(sender="me@gmail.com", subject="Hi", body="Long time no see!")
    blobs = services.blobs()
    assert isinstance(blobs, MemoryBlobStore)
    assert not any(b"app-password-123" in data for data in blobs.blobs.values())
    record = services.sends().get(instance_id)
    assert record is not None
    assert (record.kind, record.total, record.list_ref) == ("smtp", 1, instance_id)
    assert "app-password-123" not in caplog.text
    assert "app-password-123" not in response.get_body().decode()


def test_user_send_without_a_sealing_key_is_a_generic_500(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    response = call(app_functions, "user_send", client, path="/api/v1/emails/user-send", body=USER)
    envelope = assert_envelope(response, 500, "/api/v1/emails/user-send")
    assert envelope["error"] == "Internal Server Error"
    assert "SEALING" not in envelope["message"]
    assert client.started == []


def test_a_password_that_is_not_valid_unicode_is_400_not_500(
    app_functions: dict[str, Any], client: FakeDurableClient, sealing_key: str
) -> None:
    # Found by fuzzing: an unpaired surrogate in the password reached the sealer, which raised.
    raw = json.dumps({**USER, "password": "app\ud800"}).encode()
    assert b"\\ud800" in raw  # valid JSON, but no valid UTF-8 text
    response = call(app_functions, "user_send", client, path="/api/v1/emails/user-send", body=raw)
    envelope = assert_envelope(response, 400, "/api/v1/emails/user-send")
    assert envelope["message"] == "Validation failed: password must be valid Unicode text"
    assert client.started == []


def test_an_unknown_provider_is_400(
    app_functions: dict[str, Any], client: FakeDurableClient, sealing_key: str
) -> None:
    body = {**USER, "provider": "HOTMAIL"}
    response = call(app_functions, "user_send", client, path="/api/v1/emails/user-send", body=body)
    envelope = assert_envelope(response, 400, "/api/v1/emails/user-send")
    assert envelope["message"] == "Validation failed: provider must be one of GMAIL, NAVER, KAKAO"


def test_an_unexpected_error_is_a_generic_500_and_logged(
    app_functions: dict[str, Any],
    quota: StubQuota,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(FakeDurableClient):
        async def start_new(self, *args: Any, **kwargs: Any) -> str:
            raise RuntimeError("task hub storage said: secret internals")

    response = call(app_functions, "aws_send", Broken(), path="/api/v1/emails/aws-send", body=AWS)
    envelope = assert_envelope(response, 500, "/api/v1/emails/aws-send")
    assert "internals" not in envelope["message"]
    assert "secret internals" in caplog.text  # the operator sees it in the log
    blobs = services.blobs()
    assert isinstance(blobs, MemoryBlobStore)
    assert blobs.blobs == {}  # the list of a send that never started is not kept


def test_a_send_refused_before_it_starts_stores_nothing(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    quota.quota = SendQuota(max_24_hour_send=200, max_send_rate=1, sent_last_24_hours=199)
    refused = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=AWS)
    forbidden = call(
        app_functions,
        "aws_send",
        client,
        path="/api/v1/emails/aws-send",
        body={**AWS, "senderEmail": "x@elsewhere.example.com"},
    )
    assert (refused.status_code, forbidden.status_code) == (429, 403)
    blobs, sends = services.blobs(), services.sends()
    assert isinstance(blobs, MemoryBlobStore)
    assert isinstance(sends, MemorySends)
    assert (blobs.blobs, sends.records) == ({}, {})


def test_a_start_that_answers_an_error_but_did_start_is_answered_as_started(
    app_functions: dict[str, Any], quota: StubQuota, caplog: pytest.LogCaptureFixture
) -> None:
    class LostAnswer(FakeDurableClient):
        """The task hub started the instance, then the answer was lost (a timeout)."""

        async def start_new(self, *args: Any, **kwargs: Any) -> str:
            await super().start_new(*args, **kwargs)
            raise TimeoutError("the start's answer never came")

    client = LostAnswer()
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=AWS)

    assert response.status_code == 202  # a 500 would make the caller send everyone again
    [instance_id] = client.instance_ids
    assert body_of(response)["id"] == instance_id
    assert "start answered an error but it runs" in caplog.text


def first_sent_second_rejected(index: int, address: str) -> Outcome:
    return "0101-abc" if index == 0 else ("SES_MESSAGE_REJECTED", f"SES rejected {address}")


def test_prefer_wait_answers_like_v1_when_the_send_finishes_in_time(
    app_functions: dict[str, Any], quota: StubQuota
) -> None:
    client = FinishingClient(first_sent_second_rejected, running=1)
    response = call(
        app_functions,
        "aws_send",
        client,
        path="/api/v1/emails/aws-send",
        body=AWS,
        headers={"Prefer": "respond-async, wait=5"},
    )
    assert response.status_code == 200
    [instance_id] = client.instance_ids
    # v1's answer, read from the ledger and the stored list (the output holds counts only);
    # the recipient as the request spelled it (B@example.com, the first of its duplicates)
    assert body_of(response) == {
        "id": instance_id,
        "messageIds": ["0101-abc"],
        "failures": [
            {
                "recipient": "B@example.com",
                "code": "SES_MESSAGE_REJECTED",
                "message": "SES rejected B@example.com",
            }
        ],
    }
    assert response.headers["Preference-Applied"] == "wait=5"
    location = f"{BASE}/api/v1/emails/{instance_id}"
    assert response.headers["Location"] == response.headers["Content-Location"] == location
    assert all(not shown for _, shown in client.status_reads)  # never the input


def test_prefer_wait_above_the_inline_limit_answers_the_recipients_url_instead(
    app_functions: dict[str, Any], quota: StubQuota, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDMAIL_STATUS_INLINE_RECIPIENTS", "1")
    get_settings.cache_clear()
    client = FinishingClient(first_sent_second_rejected)
    response = call(
        app_functions,
        "aws_send",
        client,
        path="/api/v1/emails/aws-send",
        body=AWS,
        headers={"Prefer": "wait=5"},
    )
    assert response.status_code == 200
    [instance_id] = client.instance_ids
    assert body_of(response) == {
        "id": instance_id,
        "messageIds": [],
        "failures": [],
        "recipientsUrl": f"{BASE}/api/v1/emails/{instance_id}/recipients",
    }


def test_prefer_wait_answers_500_when_the_send_failed(
    app_functions: dict[str, Any], quota: StubQuota
) -> None:
    client = FinishingClient(lambda i, a: None, runtime="Failed")
    response = call(
        app_functions,
        "aws_send",
        client,
        path="/api/v1/emails/aws-send",
        body=AWS,
        headers={"Prefer": "wait=5"},
    )
    envelope = assert_envelope(response, 500, "/api/v1/emails/aws-send")
    [instance_id] = client.instance_ids
    assert envelope["message"].startswith(f"The send {instance_id} ended as Failed")
    assert response.headers["Location"] == f"{BASE}/api/v1/emails/{instance_id}"


def test_prefer_wait_falls_back_to_202_when_the_send_takes_longer(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota
) -> None:
    client.statuses["inst1"] = [status("inst1", SES_ORCHESTRATOR, "Running")]
    response = call(
        app_functions,
        "aws_send",
        client,
        path="/api/v1/emails/aws-send",
        body=AWS,
        headers={"Prefer": "wait=1"},
    )
    assert response.status_code == 202
    assert response.headers["Location"].endswith(f"/api/v1/emails/{client.instance_ids[0]}")
    assert len(client.status_reads) >= 2


def test_prefer_wait_is_capped_at_sixty_seconds() -> None:
    from api.http import preferred_wait

    def prefer(value: str) -> int | None:
        req = func.HttpRequest("POST", "http://x/", headers={"Prefer": value}, body=b"")
        return preferred_wait(req)

    assert prefer("wait=600") == 60
    assert prefer("wait=10") == 10
    assert prefer("respond-async") is None
    assert prefer("handling=lenient; wait=3") == 3


def test_status_of_a_running_send_adds_up_its_lanes_progress(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    client.statuses["abc"] = [
        status(
            "abc",
            SES_ORCHESTRATOR,
            "Running",
            custom_status={"total": 10, "sent": 0, "failed": 0, "batches": 2, "lanes": 2},
        )
    ]
    lane = {"total": 5, "batches": 1, "batchesDone": 0}
    client.statuses["abc:lane0"] = [
        status("abc:lane0", LANE_ORCHESTRATOR, "Running", custom_status={**lane, "sent": 4})
    ]
    client.statuses["abc:lane1"] = [
        status(
            "abc:lane1",
            LANE_ORCHESTRATOR,
            "Running",
            custom_status={**lane, "sent": 0, "failed": 1, "pending": 3},
        )
    ]
    response = call(
        app_functions,
        "email_status",
        client,
        method="GET",
        path="/api/v1/emails/abc",
        route_params={"id": "abc"},
    )
    assert response.status_code == 202
    assert int(response.headers["Retry-After"]) > 0
    body = body_of(response)
    assert body["kind"] == "ses"
    assert body["runtimeStatus"] == "Running"
    assert body["progress"] == {"total": 10, "sent": 4, "failed": 1, "pending": 3, "canceled": 0}
    assert body["messageIds"] == []
    # showInput=false on the wire for every read: a running send's input and its lanes' are
    # never fetched by a poll (small now, but nothing a poll needs)
    assert sorted(client.status_reads) == [
        ("abc", False),
        ("abc:lane0", False),
        ("abc:lane1", False),
    ]


def test_a_running_send_whose_lane_status_cannot_be_read_still_answers(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    custom = {"total": 4, "sent": 0, "failed": 0, "pending": 0, "lanes": 2}
    client.statuses["s1"] = [status("s1", SES_ORCHESTRATOR, "Running", custom_status=custom)]
    lane0 = {"total": 2, "sent": 2, "failed": 0, "pending": 0}
    client.statuses["s1:lane0"] = [
        status("s1:lane0", LANE_ORCHESTRATOR, "Running", custom_status=lane0)
    ]
    original = client._get_async_request

    async def lane1_broken(url: str) -> tuple[int, Any]:
        if "lane1" in url:
            return 503, None  # not an answer the status API gives: read_status raises
        return await original(url)

    client._get_async_request = lane1_broken  # type: ignore[method-assign]

    response = call(
        app_functions,
        "email_status",
        client,
        path="/api/v1/emails/s1",
        method="GET",
        route_params={"id": "s1"},
    )

    assert response.status_code == 202
    assert body_of(response)["progress"] == {
        "total": 4,
        "sent": 0,
        "failed": 0,
        "pending": 0,
        "canceled": 0,
    }


def test_a_lane_is_not_a_send_on_the_status_route(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    client.statuses["abc:lane0"] = [status("abc:lane0", LANE_ORCHESTRATOR, "Running")]
    response = call(
        app_functions,
        "email_status",
        client,
        method="GET",
        path="/api/v1/emails/abc:lane0",
        route_params={"id": "abc:lane0"},
    )
    assert response.status_code == 404


def get_status(app_functions: dict[str, Any], client: FakeDurableClient, instance_id: str) -> Any:
    return call(
        app_functions,
        "email_status",
        client,
        method="GET",
        path=f"/api/v1/emails/{instance_id}",
        route_params={"id": instance_id},
    )


def test_status_of_a_pending_send_counts_its_record_without_reading_the_input(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    """Before the orchestrator's first episode there is no custom status: the total comes
    from the send's record (the sends table), never from the input, which is not even read."""
    store_finished("abc", ["a@example.com", "b@example.com"], {}, kind="smtp")
    job = {"kind": "smtp", "listRef": "abc", "total": 2, "secretRef": "abc"}
    client.statuses["abc"] = [status("abc", SMTP_ORCHESTRATOR, "Pending", input_=job)]
    response = get_status(app_functions, client, "abc")
    assert response.status_code == 202
    body = body_of(response)
    assert body["progress"] == {"total": 2, "sent": 0, "failed": 0, "pending": 0, "canceled": 0}
    assert (body["messageIds"], body["failures"]) == ([], [])
    assert body["recipientsUrl"] == f"{BASE}/api/v1/emails/abc/recipients"
    assert "a@example.com" not in response.get_body().decode()
    assert client.status_reads == [("abc", False)]


def test_status_of_a_finished_send_is_200_with_message_ids_and_failures(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    client.statuses["abc"] = [finished("abc")]
    response = get_status(app_functions, client, "abc")
    assert response.status_code == 200
    body = body_of(response)
    assert set(body) == {
        "id",
        "kind",
        "state",
        "runtimeStatus",
        "createdTime",
        "lastUpdatedTime",
        "progress",
        "messageIds",
        "failures",
        "recipientsUrl",
        "delivery",
    }
    assert body["progress"] == {"total": 2, "sent": 1, "failed": 1, "pending": 0, "canceled": 0}
    assert body["delivery"] == {
        "delivered": 0,
        "bounced": 0,
        "complained": 0,
        "rejected": 0,
        "delayed": 0,
    }
    # v1's shape, from the ledger and the stored list (the output holds counts only)
    assert body["messageIds"] == ["0101-abc"]
    assert body["failures"] == [
        {"recipient": "b@example.com", "code": "SES_MESSAGE_REJECTED", "message": "x"}
    ]
    assert body["recipientsUrl"] == f"{BASE}/api/v1/emails/abc/recipients"
    assert body["createdTime"] == "2026-11-29T10:00:00Z"
    assert "Retry-After" not in response.headers
    assert client.status_reads == [("abc", False)]  # showInput=false: the input is never read


def test_a_finished_send_lists_messages_in_recipient_order_across_lanes_and_batches(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    recipients = [f"r{i}@example.com" for i in range(23)]
    outcomes: dict[int, Outcome] = {
        i: f"m{i}" if i % 4 else ("SES_MESSAGE_REJECTED", f"no {i}") for i in range(23)
    }
    del outcomes[22]  # its batch ended without a record: unknown, so failed
    client.statuses["big"] = [finished("big", recipients, outcomes, lanes=3, batch_size=3)]
    body = body_of(get_status(app_functions, client, "big"))
    assert body["messageIds"] == [f"m{i}" for i in range(22) if i % 4]
    assert [(f["recipient"], f["code"]) for f in body["failures"]] == [
        *((f"r{i}@example.com", "SES_MESSAGE_REJECTED") for i in range(0, 22, 4)),
        ("r22@example.com", "DELIVERY_UNKNOWN"),
    ]


@pytest.mark.parametrize(("inline_limit", "inline"), [(3, True), (2, False)])
def test_a_finished_send_has_inline_results_only_up_to_the_setting(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    monkeypatch: pytest.MonkeyPatch,
    inline_limit: int,
    inline: bool,
) -> None:
    monkeypatch.setenv("SENDMAIL_STATUS_INLINE_RECIPIENTS", str(inline_limit))
    get_settings.cache_clear()
    recipients = ["a@example.com", "b@example.com", "c@example.com"]
    outcomes: dict[int, Outcome] = {0: "m0", 1: ("SES_MESSAGE_REJECTED", "x"), 2: "m2"}
    client.statuses["abc"] = [finished("abc", recipients, outcomes)]
    body = body_of(get_status(app_functions, client, "abc"))
    assert body["progress"] == {"total": 3, "sent": 2, "failed": 1, "pending": 0, "canceled": 0}
    assert body["recipientsUrl"] == f"{BASE}/api/v1/emails/abc/recipients"
    if inline:
        assert body["messageIds"] == ["m0", "m2"]
        assert body["failures"] == [
            {"recipient": "b@example.com", "code": "SES_MESSAGE_REJECTED", "message": "x"}
        ]
    else:
        assert (body["messageIds"], body["failures"]) == ([], [])


def test_the_status_of_a_send_above_the_inline_limit_stays_small_however_big_it_is(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    """20,000 recipients, every one sent, at the default limit (10,000): the answer is the
    counts and a link, and reading it reads neither the list nor the ledger."""
    total = 20_000
    assert get_settings().SENDMAIL_STATUS_INLINE_RECIPIENTS == 10_000
    recipients = [f"recipient-{i:05d}@example.com" for i in range(total)]
    outcomes: dict[int, Outcome] = {i: f"0101-{i:05d}-{'x' * 40}" for i in range(total)}
    client.statuses["big"] = [finished("big", recipients, outcomes, lanes=4, batch_size=840)]
    blobs = services.blobs()
    assert isinstance(blobs, MemoryBlobStore)
    reads = blobs.reads

    response = get_status(app_functions, client, "big")

    assert response.status_code == 200
    assert len(response.get_body()) < 64 * 1024
    body = body_of(response)
    assert body["progress"] == {
        "total": total,
        "sent": total,
        "failed": 0,
        "pending": 0,
        "canceled": 0,
    }
    assert (body["messageIds"], body["failures"]) == ([], [])
    assert body["recipientsUrl"] == f"{BASE}/api/v1/emails/big/recipients"
    assert blobs.reads == reads
    assert client.status_reads == [("big", False)]


def test_a_finished_send_without_a_record_answers_its_counts(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    """A send whose record is gone (or never written) still answers: its counts, no lists,
    no link to recipients that cannot be read."""
    client.statuses["abc"] = [completed("abc")]
    body = body_of(get_status(app_functions, client, "abc"))
    assert body["progress"] == {"total": 2, "sent": 1, "failed": 1, "pending": 0, "canceled": 0}
    assert (body["messageIds"], body["failures"]) == ([], [])
    assert "recipientsUrl" not in body


@pytest.mark.parametrize("instance_id", ["nope", "../../etc", "x" * 101])
def test_status_of_an_unknown_id_is_404_in_the_envelope(
    app_functions: dict[str, Any], client: FakeDurableClient, instance_id: str
) -> None:
    response = call(
        app_functions,
        "email_status",
        client,
        method="GET",
        path=f"/api/v1/emails/{instance_id}",
        route_params={"id": instance_id},
    )
    envelope = assert_envelope(response, 404, f"/api/v1/emails/{instance_id}")
    assert envelope["error"] == "Not Found"


def test_status_of_a_foreign_orchestration_is_404(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    client.statuses["abc"] = [status("abc", "some_other_orchestrator", "Completed")]
    response = call(
        app_functions,
        "email_status",
        client,
        method="GET",
        path="/api/v1/emails/abc",
        route_params={"id": "abc"},
    )
    assert response.status_code == 404


def test_health_is_anonymous_and_ok(app_functions: dict[str, Any]) -> None:
    response = call(app_functions, "health", None, method="GET", path="/api/health")
    assert response.status_code == 200
    assert body_of(response) == {"status": "ok"}


@pytest.mark.parametrize(("count", "lanes"), [(500, 1), (501, 2), (1200, 3), (5000, 4)])
def test_a_send_runs_as_many_lanes_as_it_has_batches_up_to_the_setting(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    quota: StubQuota,
    count: int,
    lanes: int,
) -> None:
    body = {**AWS, "recipientEmails": [f"r{i}@example.com" for i in range(count)]}
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=body)
    assert response.status_code == 202
    [(_, job)] = client.started
    assert job["lanes"] == lanes
    assert job["maxRate"] == 14


def test_prefer_wait_falls_back_to_202_when_reading_the_status_fails(
    app_functions: dict[str, Any], quota: StubQuota
) -> None:
    class FlakyStatus(FakeDurableClient):
        async def _get_async_request(self, url: str) -> tuple[int, Any]:
            raise ConnectionError("task hub storage: 503")

    client = FlakyStatus()
    response = call(
        app_functions,
        "aws_send",
        client,
        path="/api/v1/emails/aws-send",
        body=AWS,
        headers={"Prefer": "wait=5"},
    )
    # The send started: a 500 here would invite the caller to send it again.
    assert response.status_code == 202
    assert len(client.started) == 1
    assert response.headers["Location"].endswith(f"/api/v1/emails/{client.instance_ids[0]}")


@pytest.mark.parametrize(
    ("code", "status_code", "message"),
    [
        # A refused login is the caller's credentials: 403, with the sender's own words.
        ("SMTP_AUTH_FAILED", 403, "the SMTP server rejected the login"),
        # Anything else: v1 answered a failed send with 500; the message names the first failure.
        (
            "SMTP_RECIPIENT_REFUSED",
            500,
            "None of the 2 recipients could be sent (SMTP_RECIPIENT_REFUSED: the SMTP server "
            "rejected the login); see",
        ),
    ],
)
def test_prefer_wait_never_answers_v1_success_when_nobody_was_sent(
    app_functions: dict[str, Any],
    sealing_key: str,
    code: str,
    status_code: int,
    message: str,
) -> None:
    client = FinishingClient(lambda i, a: (code, "the SMTP server rejected the login"))
    body = {**USER, "recipientEmails": ["a@example.com", "b@example.com"]}
    response = call(
        app_functions,
        "user_send",
        client,
        path="/api/v1/emails/user-send",
        body=body,
        headers={"Prefer": "wait=5"},
    )
    envelope = assert_envelope(response, status_code, "/api/v1/emails/user-send")
    assert envelope["message"].startswith(message)
    assert response.headers["Location"].endswith(f"/api/v1/emails/{client.instance_ids[0]}")


@pytest.mark.parametrize("inline", ["0", "1"])
def test_a_refused_login_is_403_whatever_the_inline_limit(
    app_functions: dict[str, Any],
    sealing_key: str,
    inline: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 403 is decided on every recipient's code, not on what the status route lists."""
    monkeypatch.setenv("SENDMAIL_STATUS_INLINE_RECIPIENTS", inline)
    get_settings.cache_clear()
    client = FinishingClient(lambda i, a: ("SMTP_AUTH_FAILED", "the SMTP server rejected it"))
    body = {**USER, "recipientEmails": ["a@example.com", "b@example.com"]}
    response = call(
        app_functions,
        "user_send",
        client,
        path="/api/v1/emails/user-send",
        body=body,
        headers={"Prefer": "wait=5"},
    )
    envelope = assert_envelope(response, 403, "/api/v1/emails/user-send")
    assert envelope["message"] == "the SMTP server rejected it"


def test_prefer_wait_answers_500_when_some_of_a_failed_login_send_is_unknown(
    app_functions: dict[str, Any], sealing_key: str
) -> None:
    """403 only when every recipient failed on the login: a recipient whose outcome was never
    recorded (DELIVERY_UNKNOWN) may have been sent, so it is not the caller's credentials."""
    client = FinishingClient(
        lambda i, a: ("SMTP_AUTH_FAILED", "the SMTP server rejected the login") if i else None
    )
    body = {**USER, "recipientEmails": ["a@example.com", "b@example.com"]}
    response = call(
        app_functions,
        "user_send",
        client,
        path="/api/v1/emails/user-send",
        body=body,
        headers={"Prefer": "wait=5"},
    )
    envelope = assert_envelope(response, 500, "/api/v1/emails/user-send")
    assert envelope["message"].startswith("None of the 2 recipients could be sent (")


def test_a_send_that_could_not_be_guarded_by_the_ledger_never_starts(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    quota: StubQuota,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("AzureWebJobsStorage", "AzureWebJobsStorage__tableServiceUri"):
        monkeypatch.delenv(name, raising=False)
    services.reset()
    services.override(ses=quota)
    response = call(app_functions, "aws_send", client, path="/api/v1/emails/aws-send", body=AWS)
    assert_envelope(response, 500, "/api/v1/emails/aws-send")
    assert client.started == []
    assert "LedgerUnavailable" in caplog.text


# --- Idempotency-Key -------------------------------------------------------------------------


@pytest.fixture
def keys() -> Any:
    from sendmail.admission.idempotency import MemoryIdempotencyStore

    store = MemoryIdempotencyStore()
    services.override(idempotency=store)
    return store


def send(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    key: str,
    body: dict[str, Any] = AWS,
    route: str = "aws_send",
    **headers: str,
) -> func.HttpResponse:
    path = "/api/v1/emails/aws-send" if route == "aws_send" else "/api/v1/emails/user-send"
    return call(
        app_functions,
        route,
        client,
        path=path,
        body=body,
        headers={"Idempotency-Key": key, **headers},
    )


def test_the_same_key_and_body_again_answers_the_same_send_and_starts_nothing(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    first = send(app_functions, client, "order-1")
    again = send(app_functions, client, "order-1", body={**AWS})

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Location"] == first.headers["Location"]
    assert body_of(again) == body_of(first)
    assert len(client.started) == 1


def test_the_same_key_with_another_body_is_422_and_starts_nothing(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    send(app_functions, client, "order-1")
    other = send(app_functions, client, "order-1", body={**AWS, "subject": "changed"})

    envelope = assert_envelope(other, 422, "/api/v1/emails/aws-send")
    assert "already used for a different aws-send request" in envelope["message"]
    assert len(client.started) == 1


def test_two_callers_keys_never_meet(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    """Found by the security review: keys were global, so one caller's key (mailctl's are
    derived from the content) could answer another caller's send. They are per caller key."""

    def send_as(caller: str) -> func.HttpResponse:
        headers = {"Idempotency-Key": "order-1", "x-functions-key": caller}
        return call(
            app_functions,
            "aws_send",
            client,
            path="/api/v1/emails/aws-send",
            body=AWS,
            headers=headers,
        )

    first, other, mine_again = send_as("caller-a"), send_as("caller-b"), send_as("caller-a")

    assert (first.status_code, other.status_code, mine_again.status_code) == (202, 202, 202)
    assert first.headers["Location"] != other.headers["Location"]
    assert mine_again.headers["Location"] == first.headers["Location"]
    assert len(client.started) == 2


def test_the_same_key_with_another_password_is_422(
    app_functions: dict[str, Any], client: FakeDurableClient, sealing_key: str, keys: Any
) -> None:
    """Found by the security review: a replay with any password answered the original send
    (with Prefer: wait, its 200) — now the password's MAC is part of the request."""
    first = send(app_functions, client, "u-1", body=USER, route="user_send")
    same = send(app_functions, client, "u-1", body={**USER}, route="user_send")
    other = send(
        app_functions, client, "u-1", body={**USER, "password": "guess"}, route="user_send"
    )

    assert (first.status_code, same.status_code) == (202, 202)
    assert same.headers["Location"] == first.headers["Location"]
    assert_envelope(other, 422, "/api/v1/emails/user-send")
    assert len(client.started) == 1


def test_a_bad_key_is_400_before_anything(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    response = send(app_functions, client, "x" * 256)
    envelope = assert_envelope(response, 400, "/api/v1/emails/aws-send")
    assert "Idempotency-Key" in envelope["message"]
    assert client.started == []


def test_a_key_whose_first_request_is_still_starting_is_409_with_retry_after(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    from sendmail.admission.idempotency import fingerprints, now, scoped_key
    from sendmail.contract.models import AwsEmailRequest

    # the first request recorded the key a moment ago and has not started its send yet
    keys.claim(
        "aws-send",
        scoped_key("order-1", None),
        fingerprints("aws-send", AwsEmailRequest.model_validate(AWS)),
        now(),
    )

    response = send(app_functions, client, "order-1")

    assert_envelope(response, 409, "/api/v1/emails/aws-send")
    assert int(response.headers["Retry-After"]) >= 1
    assert client.started == []


def test_a_retry_after_the_sends_history_was_purged_starts_nothing(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    """The key's record notes that its send started: once the send's history is purged (the
    status API no longer knows it) a retry with the key must not take it over and send again."""
    first = send(app_functions, client, "order-1")
    [instance_id] = client.instance_ids
    client.statuses.clear()  # purged

    from datetime import timedelta

    from sendmail.admission.idempotency import fingerprints, now, scoped_key
    from sendmail.contract.models import AwsEmailRequest

    retry = send(app_functions, client, "order-1")
    assert retry.status_code == 202
    assert retry.headers["Location"] == first.headers["Location"]
    later = keys.claim(
        "aws-send",
        scoped_key("order-1", None),
        fingerprints("aws-send", AwsEmailRequest.model_validate(AWS)),
        now() + timedelta(minutes=5),
    )
    assert later.started
    assert later.instance_id == instance_id
    assert len(client.started) == 1


def test_a_key_whose_first_request_died_before_starting_is_taken_over_once(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    from datetime import timedelta

    from sendmail.admission.idempotency import fingerprints, now, scoped_key
    from sendmail.contract.models import AwsEmailRequest

    digest = fingerprints("aws-send", AwsEmailRequest.model_validate(AWS))
    abandoned = keys.claim(
        "aws-send", scoped_key("order-1", None), digest, now() - timedelta(minutes=2)
    )

    response = send(app_functions, client, "order-1")
    again = send(app_functions, client, "order-1")

    assert response.status_code == 202
    assert response.headers["Location"].endswith(f"/api/v1/emails/{abandoned.instance_id}")
    assert again.headers["Location"] == response.headers["Location"]
    assert len(client.started) == 1


def test_a_request_whose_key_was_taken_over_during_its_admission_starts_nothing(
    app_functions: dict[str, Any], client: FakeDurableClient, keys: Any
) -> None:
    """The first request's admission outlasts TAKEOVER_AFTER (SES slow to answer the quota
    read); a retry takes the key over and starts the send. The first one must not start it too."""
    from datetime import timedelta

    from sendmail.admission.idempotency import fingerprints, now, scoped_key
    from sendmail.contract.models import AwsEmailRequest

    digest = fingerprints("aws-send", AwsEmailRequest.model_validate(AWS))

    class SlowQuota(StubQuota):
        def get_quota(self) -> SendQuota:
            # while this request waits on SES, a retry finds the key silent and takes it over
            later = now() + timedelta(minutes=1)
            seen = keys.claim("aws-send", scoped_key("order-1", None), digest, later)
            assert keys.take_over(seen, later) is not None
            return super().get_quota()

    services.override(ses=SlowQuota())

    response = send(app_functions, client, "order-1")

    envelope = assert_envelope(response, 409, "/api/v1/emails/aws-send")
    assert "still being processed" in envelope["message"]
    assert client.started == []  # the retry that took the key over starts it, only it
    assert not keys.claim(
        "aws-send", scoped_key("order-1", None), digest, now()
    ).start  # the taker's, kept


def test_a_request_refused_with_429_drops_its_key_so_a_later_retry_can_send(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    quota.quota = SendQuota(max_24_hour_send=200, max_send_rate=1, sent_last_24_hours=199)
    refused = send(app_functions, client, "order-1")
    quota.quota = SendQuota(max_24_hour_send=200, max_send_rate=1, sent_last_24_hours=0)
    retried = send(app_functions, client, "order-1")

    assert (refused.status_code, retried.status_code) == (429, 202)
    assert len(client.started) == 1


def test_with_prefer_wait_a_repeated_request_gets_the_finished_sends_200(
    app_functions: dict[str, Any], client: FakeDurableClient, quota: StubQuota, keys: Any
) -> None:
    first = send(app_functions, client, "order-1")
    instance_id = body_of(first)["id"]
    sent, failed = record_outcomes(instance_id, {0: "0101-abc", 1: ("SES_MESSAGE_REJECTED", "x")})
    client.statuses[instance_id] = [completed(instance_id, total=2, sent=sent, failed=failed)]

    again = send(app_functions, client, "order-1", Prefer="wait=5")

    assert again.status_code == 200
    assert body_of(again) == {
        "id": instance_id,
        "messageIds": ["0101-abc"],
        "failures": [
            {"recipient": "B@example.com", "code": "SES_MESSAGE_REJECTED", "message": "x"}
        ],
    }
    assert len(client.started) == 1
