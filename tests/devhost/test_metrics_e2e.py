"""The app's metrics for known sends, end to end: the real app under devhost, whose in-memory
OpenTelemetry SDK (devhost/metrics.py) is read through ``GET /_dev/metrics``.

devhost's SES plays a sandboxed account with preflight off, so SES itself rejects the
unverified recipients one by one (``MessageRejected``): a send of 5 ends with exactly 3 sent
and 2 failed. An SMTP send goes through devhost's TLS sink, and a malformed request is refused.
Every count below is what those three requests must produce, no more: the metrics are exact
here (one process), and each finished send prints its one-line summary."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
VERIFIED = [f"ok{i}@example.com" for i in range(3)]
UNVERIFIED = ["stranger0@example.net", "stranger1@example.net"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    env = {
        **FAST_SES,
        "DEVHOST_SES_SANDBOX": "1",
        "DEVHOST_SES_VERIFIED_IDENTITIES": ",".join([SENDER, *VERIFIED]),
        "SENDMAIL_PREFLIGHT_ENABLED": "false",  # SES refuses them itself, per recipient
    }
    with real_app(tmp_path_factory.mktemp("metrics") / "state", env) as process:
        yield process


def points(metrics: dict[str, Any], name: str) -> list[tuple[dict[str, Any], float]]:
    metric = metrics["metrics"].get(name)
    return [(p["attributes"], p["value"]) for p in metric["points"]] if metric else []


def total(metrics: dict[str, Any], name: str, **where: Any) -> float:
    return sum(
        value
        for attributes, value in points(metrics, name)
        if all(attributes.get(k) == v for k, v in where.items())
    )


def test_metrics_count_exactly_what_known_sends_did(app: DevhostProcess) -> None:
    refused = app.request(
        "POST", "/api/v1/emails/aws-send", json={"senderEmail": SENDER}, timeout=60
    )
    ses = app.request(
        "POST",
        "/api/v1/emails/aws-send",
        json={
            "senderEmail": SENDER,
            "recipientEmails": [*VERIFIED, *UNVERIFIED],
            "subject": "s",
            "body": "b",
        },
        timeout=60,
    )
    smtp = app.request(
        "POST",
        "/api/v1/emails/user-send",
        json={
            "provider": "GMAIL",
            "senderEmail": "me@gmail.com",
            "password": "app-password",
            "recipientEmails": ["friend0@example.com", "friend1@example.com"],
            "subject": "s",
            "body": "b",
        },
        timeout=60,
    )
    assert refused.status_code == 400
    assert ses.status_code == 202, ses.text
    assert smtp.status_code == 202, smtp.text
    ses_id, smtp_id = ses.json()["id"], smtp.json()["id"]
    ses_done = app.wait_for(ses_id, timeout=120)["output"]
    smtp_done = app.wait_for(smtp_id, timeout=120)["output"]
    assert (ses_done["sent"], ses_done["failed"]) == (3, 2)
    assert smtp_done["sent"] == 2

    metrics = app.request("GET", "/_dev/metrics").json()

    assert metrics["enabled"] is True
    assert total(metrics, "sendmail.sends.started", api="aws", category="transactional") == 1
    assert total(metrics, "sendmail.sends.started", api="user", scheduled="false") == 1
    assert total(metrics, "sendmail.recipients.queued", api="aws") == 5
    assert total(metrics, "sendmail.recipients.queued", api="user") == 2
    assert total(metrics, "sendmail.recipients.sent", transport="ses") == 3
    assert total(metrics, "sendmail.recipients.sent", transport="smtp") == 2
    failed = points(metrics, "sendmail.recipients.failed")
    assert sum(value for _, value in failed) == 2
    assert {a["transport"] for a, _ in failed} == {"ses"}
    assert total(metrics, "sendmail.recipients.canceled") == 0
    assert total(metrics, "sendmail.sends.finished", state="completed") == 2
    assert total(metrics, "sendmail.sends.finished", state="failed") == 0
    assert points(metrics, "sendmail.admission.refusals") == [
        ({"route": "aws-send", "status": "400", "reason": "validation_failed"}, 1)
    ]
    assert metrics["derived"]["sendmail.recipients.pending"] == 0
    # The gauge reads the live SES batches: none now.
    assert total(metrics, "sendmail.ses.rate") == 0

    spans = metrics["spans"]
    admitted = {s["sendId"] for s in spans if s["name"] == "sendmail.admit"}
    batches = {
        (s["sendId"], s["attributes"]["sendmail.transport"])
        for s in spans
        if s["name"] == "sendmail.batch"
    }
    assert {ses_id, smtp_id} <= admitted
    assert {(ses_id, "ses"), (smtp_id, "smtp")} <= batches

    log = app.log()
    assert re.search(rf"send {ses_id} completed: 3 sent, 2 failed, 0 canceled of 5 in ", log)
    assert re.search(rf"send {smtp_id} completed: 2 sent, 0 failed, 0 canceled of 2 in ", log)
