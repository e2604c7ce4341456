"""Content and timing end to end, under devhost with its emulators: what a recipient
gets (the outbox's headers, text and HTML parts), the one-click unsubscribe a mail client
makes, the next marketing send skipping that recipient while transactional mail still reaches
them, and a scheduled send waiting for its time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
PEOPLE = [
    ("minsu@example.com", {"name": "김민수"}),
    ("jiwoo@example.com", {"name": '<b>"지우"</b>'}),
    ("guest@example.com", {}),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    with real_app(tmp_path_factory.mktemp("marketing") / "state", FAST_SES) as process:
        yield process


def send(app: DevhostProcess, body: dict[str, Any]) -> requests.Response:
    return app.request("POST", "/api/v1/emails/aws-send", json=body)


def finished(app: DevhostProcess, response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = app.session.get(location, headers={"x-functions-key": app.key}, timeout=30)
        if answer.status_code == 200:
            body: dict[str, Any] = answer.json()
            return body
        assert answer.status_code == 202, answer.text
        time.sleep(0.3)
    raise TimeoutError(location)


def counts(status: dict[str, Any]) -> tuple[int, int]:
    return status["progress"]["sent"], status["progress"]["failed"]


def outbox(app: DevhostProcess) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = app.request("GET", "/_dev/outbox").json()["messages"]
    return messages


def header(message: dict[str, Any], name: str) -> str | None:
    found = [value for key, value in message["headers"] if key.lower() == name.lower()]
    assert len(found) <= 1
    return found[0] if found else None


def newsletter(**fields: Any) -> dict[str, Any]:
    return {
        "senderEmail": SENDER,
        "recipients": [{"email": e, "variables": v} for e, v in PEOPLE],
        "subject": '{{ name | default("회원") }}님, 12월 소식',
        "body": '안녕하세요 {{ name | default("회원") }}님.\n이번 달 소식입니다.',
        "html": '<html><body><p>안녕하세요 {{ name | default("회원") }}님</p></body></html>',
        "category": "marketing",
        **fields,
    }


def test_a_personalised_marketing_send_then_one_click_unsubscribe(app: DevhostProcess) -> None:
    before = len(outbox(app))

    status = finished(app, send(app, newsletter()))

    assert counts(status) == (3, 0)
    got = {m["to"][0]: m for m in outbox(app)[before:]}
    assert set(got) == {e for e, _ in PEOPLE}
    minsu, jiwoo, guest = (got[e] for e, _ in PEOPLE)
    assert minsu["subject"] == "(광고) 김민수님, 12월 소식"
    assert minsu["text"].startswith("안녕하세요 김민수님.\n이번 달 소식입니다.\n\n--\n")
    assert guest["subject"] == "(광고) 회원님, 12월 소식"
    # values are escaped in the HTML part only
    assert jiwoo["subject"] == '(광고) <b>"지우"</b>님, 12월 소식'
    assert "<p>안녕하세요 &lt;b&gt;&quot;지우&quot;&lt;/b&gt;님</p>" in jiwoo["html"]
    link = header(minsu, "List-Unsubscribe")
    assert link is not None
    assert link.startswith(f"<{app.base_url}/api/v1/unsubscribe/u1")
    assert header(minsu, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert (header(minsu, "Content-Type") or "").startswith("multipart/alternative")
    url = link.strip("<>")
    assert url in minsu["text"]
    assert f'<a href="{url}">' in minsu["html"]
    assert "minsu" not in url

    # A mail client's one-click unsubscribe (RFC 8058): anonymous, form-encoded.
    clicked = requests.post(
        url,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert clicked.status_code == 200, clicked.text

    before = len(outbox(app))
    again = finished(app, send(app, newsletter()))
    transactional = finished(
        app,
        send(app, newsletter(category="transactional", body="영수증입니다", html=None)),
    )

    assert counts(again) == (2, 1)
    (skipped,) = again["failures"]
    assert (skipped["recipient"], skipped["code"]) == ("minsu@example.com", "UNSUBSCRIBED")
    assert counts(transactional) == (3, 0)
    delivered = [m["to"][0] for m in outbox(app)[before:]]
    assert sorted(delivered) == sorted(
        ["jiwoo@example.com", "guest@example.com", *[e for e, _ in PEOPLE]]
    )
    receipt = next(m for m in outbox(app)[before:] if m["subject"] == "김민수님, 12월 소식")
    assert header(receipt, "List-Unsubscribe") is None
    assert receipt["html"] is None


def test_a_missing_variable_is_400_before_anything_starts(app: DevhostProcess) -> None:
    body = newsletter(subject="{{ name }}님, 12월 소식")
    listed = app.request("GET", "/runtime/webhooks/durabletask/instances").json()

    answer = send(app, body)

    assert answer.status_code == 400
    assert answer.json()["message"] == (
        "Validation failed: recipients[2] (guest@example.com) has no value for 'name', which "
        "subject uses without a default"
    )
    assert app.request("GET", "/runtime/webhooks/durabletask/instances").json() == listed


def test_a_user_send_with_html_arrives_as_multipart_over_smtp(app: DevhostProcess) -> None:
    before = len(outbox(app))
    answer = app.request(
        "POST",
        "/api/v1/emails/user-send",
        json={
            "provider": "GMAIL",
            "senderEmail": "me@gmail.com",
            "password": "app-password",
            "recipientEmails": ["friend@example.com"],
            "subject": "사진 보내요 😀",
            "body": "텍스트로 보는 분께",
            "html": "<p>HTML로 보는 분께 😀</p>",
        },
    )

    status = finished(app, answer)

    assert counts(status) == (1, 0)
    (message,) = outbox(app)[before:]
    assert message["transport"] == "smtp"
    assert (message["subject"], message["text"], message["html"]) == (
        "사진 보내요 😀",
        "텍스트로 보는 분께",
        "<p>HTML로 보는 분께 😀</p>",
    )
    assert header(message, "List-Unsubscribe") is None


def test_a_scheduled_send_waits_for_its_time_then_sends(app: DevhostProcess) -> None:
    """A durable timer under devhost: ``state: scheduled`` with its time, nothing sent before
    it, then the send runs as any other and the status says ``completed``."""
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    before = len(outbox(app))
    body = {
        "senderEmail": SENDER,
        "recipientEmails": ["later@example.com"],
        "subject": "예약 발송",
        "body": "정해진 시간에 보냅니다",
        "scheduledAt": when.isoformat(),
        "metadata": {"campaign": "scheduled-e2e"},
    }

    answer = send(app, body)
    assert answer.status_code == 202, answer.text
    waiting = app.session.get(
        answer.headers["Location"], headers={"x-functions-key": app.key}, timeout=30
    ).json()
    status = finished(app, answer)

    assert (waiting["state"], waiting["scheduledAt"]) == (
        "scheduled",
        when.isoformat().replace("+00:00", "Z"),
    )
    assert status["state"] == "completed"
    assert counts(status) == (1, 0)
    assert status["metadata"] == {"campaign": "scheduled-e2e"}
    (message,) = outbox(app)[before:]
    assert datetime.fromisoformat(message["receivedAt"].replace("Z", "+00:00")) >= when
