"""Signed webhooks end to end under devhost: a send's send.completed posted to a receiver on
loopback through the app's queue trigger (devhost runs it as the host does), verified with the
``standardwebhooks`` package, retried with the same ``webhook-id`` after a 503, and each attempt
shown at ``GET /_dev/webhooks``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from sendmail.feedback.webhooks.signing import new_secret
from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SECRET = new_secret()


class Receiver:
    """A webhook endpoint on loopback: answers each request with the next status given (then
    204), and keeps what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes, int]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    receiver.got.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}/sendmail"

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[dict[str, str], bytes, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= count:
                    return list(self.got)
            time.sleep(0.1)
        raise TimeoutError(f"{len(self.got)} of {count} webhook requests came")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[DevhostProcess]:
    env = {
        **FAST_SES,
        "SENDMAIL_WEBHOOK_URLS": receiver.url,
        "SENDMAIL_WEBHOOK_SECRET": SECRET,
        "SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP": "true",
    }
    with real_app(tmp_path_factory.mktemp("webhooks") / "state", env) as process:
        yield process


def test_send_completed_is_signed_and_retried_with_the_same_id(
    app: DevhostProcess, receiver: Receiver
) -> None:
    receiver.statuses = [503]  # the first attempt fails: the second must carry the same id
    answer = app.request(
        "POST",
        "/api/v1/emails/aws-send",
        json={
            "senderEmail": "se@aifactory.page",
            "recipientEmails": ["a@example.com", "b@example.com"],
            "subject": "s",
            "body": "b",
            "metadata": {"campaign": "e2e"},
        },
    )
    assert answer.status_code == 202, answer.text
    send_id = answer.json()["id"]

    (first_headers, first_body, first_status), (headers, body, status) = receiver.wait_for(2)

    assert (first_status, status) == (503, 204)
    assert first_headers["webhook-id"] == headers["webhook-id"]
    assert first_body == body
    event = Webhook(SECRET).verify(body, headers)  # raises when the signature does not verify
    assert event["type"] == "send.completed"
    assert event["data"] == {
        "sendId": send_id,
        "metadata": {"campaign": "e2e"},
        "state": "completed",
        "counts": {"total": 2, "sent": 2, "failed": 0, "canceled": 0},
    }
    assert int(headers["webhook-timestamp"]) >= int(first_headers["webhook-timestamp"])
    assert json.loads(first_body)["type"] == "send.completed"

    # devhost shows each attempt: what was sent and what the endpoint answered
    attempts = app.request("GET", "/_dev/webhooks").json()["attempts"]
    seen = [
        (a["id"], a["type"], a["attempt"], a["result"], a["status"])
        for a in attempts
        if a["type"] == "send.completed"
    ]
    assert seen == [
        (headers["webhook-id"], "send.completed", 1, "retry", 503),
        (headers["webhook-id"], "send.completed", 2, "delivered", 204),
    ]
    assert json.loads(attempts[-1]["body"]) == event
    assert attempts[-1]["endpoint"].startswith("http://127.0.0.1:")
