"""The events endpoint, a send's events and the suppression routes, called as the host calls them.

SNS messages are signed by devhost's signer with a key made here; the verifier's certificate
fetch is a dict. Every answer is also held to the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import uuid
from dataclasses import replace
from typing import Any

import azure.functions as func
import pytest

from api import sns as api_sns
from devhost.emulators.sns import SigningKey
from orchestrators.names import SES_ORCHESTRATOR, SMTP_ORCHESTRATOR
from sendmail import services
from sendmail.feedback.sns import SnsVerifier
from sendmail.platform.tables import TableUnavailable
from tests.support.durable import FakeDurableClient, status
from tests.support.http import BASE, completed
from tests.test_openapi import fetch_document, response_validator
from tests.test_sns import CERT_URL, SUBSCRIBE_URL, TOPIC, Certificates, confirmation

SEND = "send0001"
SES_MESSAGE_ID = "0102018c-ses-message-000000"


@pytest.fixture(scope="module")
def signing() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def fetch(signing: SigningKey) -> Certificates:
    fetch = Certificates({CERT_URL: signing.cert_pem, SUBSCRIBE_URL: b"<ok/>"})
    services.override(sns=SnsVerifier([TOPIC], fetch=fetch))
    return fetch


#: The SNS route's check that a send is still kept (a record, not being purged).
SEND_KEPT = api_sns._send_kept


@pytest.fixture(autouse=True)
def every_send_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests post events for sends that have no record (their statuses come from a fake
    Durable client); SES's events about a send no longer kept are not stored, which
    test_an_event_about_a_purged_send_suppresses_but_is_not_stored pins with the real check."""
    monkeypatch.setattr(api_sns, "_send_kept", lambda _send_id: True)


@pytest.fixture
def client() -> FakeDurableClient:
    client = FakeDurableClient()
    client.statuses[SEND] = [completed(SEND)]
    client.statuses["smtp1"] = [completed("smtp1", SMTP_ORCHESTRATOR)]
    client.statuses["running"] = [
        status("running", SES_ORCHESTRATOR, "Running", custom_status={"total": 3})
    ]
    return client


@pytest.fixture
def document(app_functions: dict[str, Any]) -> dict[str, Any]:
    return fetch_document(app_functions)


def call(
    app_functions: dict[str, Any],
    name: str,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    client: FakeDurableClient | None = None,
) -> func.HttpResponse:
    user_function = app_functions[name].get_user_function()
    req = func.HttpRequest(
        method=method,
        url=f"{BASE}{path}",
        headers=headers or {},
        params=params or {},
        route_params=route_params or {},
        body=body,
    )
    if client is not None:
        result = user_function.client_function(req=req, client=client)
    else:
        result = user_function(req)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    assert isinstance(result, func.HttpResponse)
    return result


def documented(
    document: dict[str, Any], path: str, method: str, response: func.HttpResponse
) -> Any:
    if response.status_code == 204:
        assert "204" in document["paths"][path][method]["responses"]
        assert response.get_body() == b""
        return None
    body = json.loads(response.get_body())
    response_validator(document, path, method, response.status_code).validate(body)
    return body


def ses_record(kind: str, recipient: str, send_id: str | None = SEND) -> dict[str, Any]:
    mail: dict[str, Any] = {
        "timestamp": "2026-12-01T10:00:00.000Z",
        "source": "se@aifactory.page",
        "messageId": SES_MESSAGE_ID,
        "destination": [recipient],
        "tags": {"ses:configuration-set": ["sendmail"]},
    }
    if send_id is not None:
        mail["tags"]["sendmail-send-id"] = [send_id]
    record: dict[str, Any] = {"eventType": kind, "mail": mail}
    if kind == "Bounce":
        record["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": recipient, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
            "timestamp": "2026-12-01T10:00:02.000Z",
        }
    elif kind == "Delivery":
        record["delivery"] = {
            "timestamp": "2026-12-01T10:00:01.000Z",
            "recipients": [recipient],
            "smtpResponse": "250 ok",
        }
    return record


def sns_body(signing: SigningKey, message: str, **overrides: Any) -> bytes:
    fields = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": "2026-12-01T10:00:03.000Z",
        "SigningCertURL": CERT_URL,
        **overrides,
    }
    return json.dumps(signing.sign(fields)).encode()


def post_event(app_functions: dict[str, Any], raw: bytes, **headers: str) -> func.HttpResponse:
    return call(
        app_functions,
        "ses_events",
        "/api/v1/events/ses?code=key",
        method="POST",
        body=raw,
        headers={"Content-Type": "text/plain; charset=UTF-8", **headers},
    )


def email_status(app_functions: dict[str, Any], client: FakeDurableClient, sid: str) -> Any:
    response = call(
        app_functions,
        "email_status",
        f"/api/v1/emails/{sid}",
        route_params={"id": sid},
        client=client,
    )
    return json.loads(response.get_body())


# --- the SNS endpoint -------------------------------------------------------------------------


def test_a_verified_bounce_is_counted_listed_and_suppresses(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    fetch: Certificates,
    signing: SigningKey,
    document: dict[str, Any],
) -> None:
    raw = sns_body(signing, json.dumps(ses_record("Bounce", "Gone@Example.com")))
    response = post_event(app_functions, raw, **{"x-amz-sns-message-type": "Notification"})
    assert documented(document, "/v1/events/ses", "post", response) == {
        "type": "Notification",
        "recorded": 1,
        "duplicates": 0,
        "suppressed": 1,
        "unattributed": 0,
        "ignored": False,
        "replayed": False,
    }
    post_event(app_functions, sns_body(signing, json.dumps(ses_record("Delivery", "b@x.example"))))

    assert email_status(app_functions, client, SEND)["delivery"] == {
        "delivered": 1,
        "bounced": 1,
        "complained": 0,
        "rejected": 0,
        "delayed": 0,
    }
    listed = call(
        app_functions,
        "suppression_get",
        "/api/v1/suppressions/gone@example.com",
        route_params={"email": "gone@example.com"},
    )
    entry = documented(document, "/v1/suppressions/{email}", "get", listed)
    assert (entry["email"], entry["reason"]) == ("gone@example.com", "BOUNCE")
    assert "sendId" not in entry  # found by the security review: it led to the send's recipients
    assert "messageId" not in entry
    assert entry["subType"] == "Permanent/General"
    assert [e["reason"] for e in entry["entries"]] == ["BOUNCE"]

    # SNS delivers at least once: the same message again records nothing more
    again = post_event(app_functions, raw)
    assert again.status_code == 200
    assert json.loads(again.get_body())["replayed"] is True
    assert email_status(app_functions, client, SEND)["delivery"]["bounced"] == 1


def test_a_verified_bounce_queues_its_email_bounced_webhook(
    app_functions: dict[str, Any],
    fetch: Certificates,
    signing: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored first, then queued, then the SNS message is remembered: a failure to queue is a
    500 and SNS delivers again (the same webhook id: receivers de-duplicate)."""
    from sendmail.feedback.webhooks.outbox import MemoryWebhookQueue, Pending
    from sendmail.feedback.webhooks.signing import new_secret
    from sendmail.platform.settings import get_settings

    monkeypatch.setenv("SENDMAIL_WEBHOOK_URLS", "https://hooks.example.com/in")
    monkeypatch.setenv("SENDMAIL_WEBHOOK_SECRET", new_secret())
    get_settings.cache_clear()
    queue = MemoryWebhookQueue()
    services.override(webhook_queue=queue)

    raw = sns_body(signing, json.dumps(ses_record("Bounce", "gone@example.com")))
    assert post_event(app_functions, raw).status_code == 200

    [(message, _)] = queue.messages
    body = json.loads(Pending.model_validate_json(message).body)
    assert (body["type"], body["data"]["recipient"], body["data"]["sendId"]) == (
        "email.bounced",
        "gone@example.com",
        SEND,
    )


def test_a_replayed_bounce_does_not_undo_an_operators_removal(
    app_functions: dict[str, Any], fetch: Certificates, signing: SigningKey
) -> None:
    """Found by the security review: a genuine Bounce, captured once and posted again, put back
    on the list an address an operator had removed. The MessageId is remembered: the replay is
    acknowledged and does nothing."""
    raw = sns_body(signing, json.dumps(ses_record("Bounce", "back@example.com")))
    assert json.loads(post_event(app_functions, raw).get_body())["suppressed"] == 1
    removed = call(
        app_functions,
        "suppression_delete",
        "/api/v1/suppressions/back@example.com",
        method="DELETE",
        route_params={"email": "back@example.com"},
    )
    assert removed.status_code == 204

    replay = post_event(app_functions, raw)

    assert replay.status_code == 200
    assert json.loads(replay.get_body())["replayed"] is True
    assert services.suppressions().get("back@example.com") == []
    # a new bounce of the same address (another MessageId) lists it again
    fresh = sns_body(signing, json.dumps(ses_record("Bounce", "back@example.com")))
    assert json.loads(post_event(app_functions, fresh).get_body())["suppressed"] == 1


def test_a_forged_notification_is_refused_and_records_nothing(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    fetch: Certificates,
    signing: SigningKey,
    document: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The key is right (the host let it through); the signature is not SNS's."""
    forger = SigningKey.generate()
    raw = sns_body(forger, json.dumps(ses_record("Bounce", "victim@example.com")))
    with caplog.at_level(logging.WARNING, logger="api.sns"):
        response = post_event(app_functions, raw)
    body = documented(document, "/v1/events/ses", "post", response)
    assert response.status_code == 403
    # one answer for every refusal: which check failed is the operator's (the log), not the
    # caller's, who could otherwise probe the allowed topics and versions
    assert body["message"] == "The message could not be verified."
    assert "the signature does not verify" in caplog.text
    assert services.suppressions().get("victim@example.com") == []
    assert services.event_store().page(SEND, limit=10).events == []
    assert email_status(app_functions, client, SEND)["delivery"]["bounced"] == 0


def test_what_is_not_an_sns_message_is_400(
    app_functions: dict[str, Any], fetch: Certificates, document: dict[str, Any]
) -> None:
    response = post_event(app_functions, b"<xml/>")
    assert response.status_code == 400
    documented(document, "/v1/events/ses", "post", response)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"Type": ' + b"7" * 5_000 + b"}"],
    ids=["nested-100000-deep", "5000-digit-integer"],
)
def test_json_that_crashes_the_parser_is_400_and_logs_no_traceback(
    app_functions: dict[str, Any],
    fetch: Certificates,
    raw: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the security review: RecursionError and int-conversion ValueError were 500s."""
    with caplog.at_level(logging.DEBUG):
        response = post_event(app_functions, raw)
    assert response.status_code == 400
    assert json.loads(response.get_body())["status"] == 400
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_subscription_is_confirmed(
    app_functions: dict[str, Any], fetch: Certificates, signing: SigningKey
) -> None:
    response = post_event(app_functions, json.dumps(confirmation(signing)).encode())
    assert response.status_code == 200
    assert json.loads(response.get_body())["type"] == "SubscriptionConfirmation"
    assert SUBSCRIBE_URL in fetch.reads


def test_other_messages_and_events_without_a_send_are_acknowledged(
    app_functions: dict[str, Any], fetch: Certificates, signing: SigningKey
) -> None:
    test_message = post_event(app_functions, sns_body(signing, "Hello from the SNS console"))
    assert json.loads(test_message.get_body())["ignored"] is True
    untagged = ses_record("Bounce", "old@example.com", send_id=None)
    outcome = json.loads(
        post_event(app_functions, sns_body(signing, json.dumps(untagged))).get_body()
    )
    assert (outcome["recorded"], outcome["unattributed"], outcome["suppressed"]) == (0, 1, 1)


def test_a_store_failure_after_verification_is_a_500_for_sns_to_retry(
    app_functions: dict[str, Any], fetch: Certificates, signing: SigningKey
) -> None:
    class Broken:
        def add(self, entry: Any) -> bool:
            raise TableUnavailable("write failed on table SendMailSuppressions (HTTP 503)")

    services.override(suppressions=Broken())
    response = post_event(
        app_functions, sns_body(signing, json.dumps(ses_record("Bounce", "a@x.io")))
    )
    assert response.status_code == 500
    assert "SendMailSuppressions" not in response.get_body().decode()


# --- the status route and a send's events -------------------------------------------------------


def test_the_status_of_a_running_send_counts_events_too_and_smtp_sends_have_none(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    fetch: Certificates,
    signing: SigningKey,
) -> None:
    post_event(
        app_functions,
        sns_body(signing, json.dumps(ses_record("Delivery", "a@x.example", "running"))),
    )
    assert email_status(app_functions, client, "running")["delivery"]["delivered"] == 1
    assert "delivery" not in email_status(app_functions, client, "smtp1")


def test_the_status_is_answered_without_counts_when_the_store_fails(
    app_functions: dict[str, Any], client: FakeDurableClient
) -> None:
    class Broken:
        def counts(self, send_id: str) -> Any:
            raise TableUnavailable("read failed")

    services.override(events=Broken())
    body = email_status(app_functions, client, SEND)
    assert body["runtimeStatus"] == "Completed"
    assert "delivery" not in body


def test_a_sends_events_page_and_filter(
    app_functions: dict[str, Any],
    client: FakeDurableClient,
    fetch: Certificates,
    signing: SigningKey,
    document: dict[str, Any],
) -> None:
    for recipient in ("a@x.example", "b@x.example", "c@x.example"):
        post_event(app_functions, sns_body(signing, json.dumps(ses_record("Delivery", recipient))))
    post_event(app_functions, sns_body(signing, json.dumps(ses_record("Bounce", "d@x.example"))))
    route = "/v1/emails/{id}/events"

    def page(**params: str) -> func.HttpResponse:
        return call(
            app_functions,
            "email_events",
            f"/api/v1/emails/{SEND}/events",
            params=params,
            route_params={"id": SEND},
            client=client,
        )

    first = documented(document, route, "get", page(limit="3"))
    # the deliveries happened at the same moment (any order), the bounce a second later
    assert {e["recipient"] for e in first["events"]} == {
        "a@x.example",
        "b@x.example",
        "c@x.example",
    }
    rest = documented(document, route, "get", page(limit="3", cursor=first["nextCursor"]))
    assert [e["recipient"] for e in rest["events"]] == ["d@x.example"]
    assert "nextCursor" not in rest
    bounces = documented(document, route, "get", page(type="Bounce"))
    assert [(e["recipient"], e["subType"]) for e in bounces["events"]] == [
        ("d@x.example", "Permanent/General")
    ]
    for bad in (
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"type": "Open"},
        {"cursor": "xyz"},
    ):
        response = page(**bad)
        assert response.status_code == 400, bad
        documented(document, route, "get", response)
    smtp = call(
        app_functions,
        "email_events",
        "/api/v1/emails/smtp1/events",
        route_params={"id": "smtp1"},
        client=client,
    )
    assert json.loads(smtp.get_body()) == {"id": "smtp1", "events": []}
    for unknown in ("nope", "../etc", "x" * 101):
        missing = call(
            app_functions,
            "email_events",
            f"/api/v1/emails/{unknown}/events",
            route_params={"id": unknown},
            client=client,
        )
        assert missing.status_code == 404
        documented(document, route, "get", missing)


# --- the suppression routes ---------------------------------------------------------------------


def test_an_operator_removes_an_address_from_the_list(
    app_functions: dict[str, Any], document: dict[str, Any]
) -> None:
    from tests.test_suppression import entry

    services.suppressions().add(entry("back@example.com", "COMPLAINT"))
    route = "/v1/suppressions/{email}"

    def do(name: str, method: str, email: str) -> func.HttpResponse:
        return call(
            app_functions,
            name,
            f"/api/v1/suppressions/{email}",
            method=method,
            route_params={"email": email},
        )

    assert (
        documented(document, route, "get", do("suppression_get", "GET", "Back@Example.com"))[
            "reason"
        ]
        == "COMPLAINT"
    )
    removed = do("suppression_delete", "DELETE", "back@example.com")
    assert removed.status_code == 204
    documented(document, route, "delete", removed)
    for name, method in (("suppression_get", "GET"), ("suppression_delete", "DELETE")):
        missing = do(name, method, "back@example.com")
        assert missing.status_code == 404
        documented(document, route, method.lower(), missing)
        for bad in (
            "no-at-sign",
            "two@@example.com",
            "with space@example.com",
            "x" * 320 + "@e.io",
        ):
            invalid = do(name, method, bad)
            assert invalid.status_code == 400, bad
            documented(document, route, method.lower(), invalid)


def test_the_routes_show_every_reason_and_never_drop_an_unsubscribe_unasked(
    app_functions: dict[str, Any], document: dict[str, Any]
) -> None:
    """An unsubscribed address that later bounced: GET shows both (the bounce first and at the
    top); DELETE without a reason takes the bounce or complaint and keeps the unsubscribe (the
    person's consent), which goes only with ?reason=UNSUBSCRIBED."""
    from tests.test_suppression import entry

    services.suppressions().add(entry("both@example.com", "UNSUBSCRIBED", send_id=SEND))
    services.suppressions().add(entry("both@example.com", "BOUNCE", event_type="Bounce"))
    route = "/v1/suppressions/{email}"

    def do(method: str, reason: str | None = None) -> func.HttpResponse:
        return call(
            app_functions,
            "suppression_get" if method == "GET" else "suppression_delete",
            "/api/v1/suppressions/both@example.com",
            method=method,
            params={"reason": reason} if reason is not None else None,
            route_params={"email": "both@example.com"},
        )

    body = documented(document, route, "get", do("GET"))
    assert (body["reason"], body["eventType"]) == ("BOUNCE", "Bounce")
    assert [(e["reason"], e.get("eventType")) for e in body["entries"]] == [
        ("BOUNCE", "Bounce"),
        ("UNSUBSCRIBED", None),
    ]
    assert SEND not in json.dumps(body)  # an unsubscribe's send stays in the table

    bad = do("DELETE", "bounce")
    assert bad.status_code == 400
    assert "reason must be" in documented(document, route, "delete", bad)["message"]
    assert do("DELETE", "COMPLAINT").status_code == 404  # its delivery entry is a bounce
    assert do("DELETE", "BOUNCE").status_code == 204
    body = documented(document, route, "get", do("GET"))
    assert (body["reason"], [e["reason"] for e in body["entries"]]) == (
        "UNSUBSCRIBED",
        ["UNSUBSCRIBED"],
    )
    services.suppressions().add(entry("both@example.com", "COMPLAINT"))
    assert do("DELETE").status_code == 204  # the complaint
    assert [e.reason for e in services.suppressions().get("both@example.com")] == ["UNSUBSCRIBED"]
    kept = do("DELETE")
    assert kept.status_code == 404
    assert "?reason=UNSUBSCRIBED" in documented(document, route, "delete", kept)["message"]
    assert do("DELETE", "UNSUBSCRIBED").status_code == 204
    assert do("GET").status_code == 404
    assert services.suppressions().get("both@example.com") == []


def test_a_failing_suppression_route_logs_the_route_not_the_address(
    app_functions: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 is logged with the request's path — which names the address on these routes — so
    the route parameter is written as its name."""

    class Down:
        def get(self, email: str) -> list[Any]:
            raise TableUnavailable("storage down")

    services.override(suppressions=Down())
    caplog.set_level(logging.DEBUG)

    answer = call(
        app_functions,
        "suppression_get",
        "/api/v1/suppressions/Kim.Minsu%40example.com",
        route_params={"email": "Kim.Minsu@example.com"},
    )

    assert answer.status_code == 500
    assert "GET /api/v1/suppressions/{email}" in caplog.text
    assert "minsu" not in caplog.text.lower()


@pytest.mark.parametrize("gone", ["no record", "being purged"])
def test_an_event_about_a_purged_send_suppresses_but_is_not_stored(
    app_functions: dict[str, Any],
    fetch: Certificates,
    signing: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    gone: str,
) -> None:
    """A late bounce for a send retention purged (or is purging) would name its recipient in a
    partition nothing purges again: it is not stored; the address is suppressed all the same."""
    from datetime import UTC, datetime

    from sendmail.sending.sends import SendRecord

    monkeypatch.setattr(api_sns, "_send_kept", SEND_KEPT)
    kept = SendRecord(
        id="kept",
        kind="ses",
        total=1,
        lanes=1,
        batch_size=500,
        list_ref="kept",
        created=datetime.now(UTC),
    )
    services.sends().create(kept)
    if gone == "being purged":
        services.sends().create(replace(kept, id=SEND, list_ref=SEND))
        services.sends().mark_purging(SEND, datetime.now(UTC))
    kept_raw = sns_body(signing, json.dumps(ses_record("Delivery", "ok@example.com", "kept")))
    post_event(app_functions, kept_raw, **{"x-amz-sns-message-type": "Notification"})
    raw = sns_body(signing, json.dumps(ses_record("Bounce", "late@example.com")))

    response = post_event(app_functions, raw, **{"x-amz-sns-message-type": "Notification"})

    body = json.loads(response.get_body())
    assert (body["recorded"], body["suppressed"]) == (0, 1)
    assert services.event_store().page(SEND, limit=10).events == []
    assert services.suppressions().get("late@example.com")
    assert len(services.event_store().page("kept", limit=10).events) == 1  # a kept send's: stored
