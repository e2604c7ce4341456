"""v1's "batch queue saturated" 429, from the task hub's work-item queue on a real Azurite."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sendmail import services
from sendmail.admission.backlog import BacklogProbe, admit_backlog, work_item_queue_name
from sendmail.contract.errors import QuotaExceeded
from tests.support import http
from tests.support.durable import FakeDurableClient
from tests.support.http import StubQuota


def test_the_queue_is_the_storage_providers_work_item_queue() -> None:
    assert work_item_queue_name("SendMail") == "sendmail-workitems"


@pytest.fixture
def queue(azurite_all: Any) -> Any:
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(
        azurite_all.connection_string, queue_name=f"hub{uuid.uuid4().hex[:8]}-workitems"
    )
    client.create_queue()
    yield client
    client.delete_queue()


def test_the_probe_reads_how_many_batches_wait(queue: Any) -> None:
    for n in range(5):
        queue.send_message(f"work item {n}")
    assert BacklogProbe(queue).queued() == 5


def test_more_than_the_limit_is_a_429_with_retry_after(queue: Any) -> None:
    for n in range(3):
        queue.send_message(f"work item {n}")
    assert admit_backlog(BacklogProbe(queue), 3) == 3  # at the limit: admitted
    queue.send_message("one more")
    with pytest.raises(QuotaExceeded, match="internal batch queue is saturated") as caught:
        admit_backlog(BacklogProbe(queue), 3)
    assert int(caught.value.headers["Retry-After"]) > 0


def test_a_queue_not_made_yet_holds_nothing(azurite_all: Any) -> None:
    from azure.storage.queue import QueueClient

    missing = QueueClient.from_connection_string(
        azurite_all.connection_string, queue_name="nothere-workitems"
    )
    assert BacklogProbe(missing).queued() == 0


def test_a_probe_that_fails_never_blocks_sending(caplog: pytest.LogCaptureFixture) -> None:
    from azure.storage.queue import QueueClient

    unreachable = QueueClient(
        account_url="http://127.0.0.1:9/devstoreaccount1",
        queue_name="sendmail-workitems",
        credential={"account_name": "devstoreaccount1", "account_key": "a2V5"},
        retry_total=0,
        connection_timeout=1,
    )
    assert admit_backlog(BacklogProbe(unreachable), 0) is None
    assert "could not be read" in caplog.text


def test_both_send_routes_answer_429_when_the_queue_is_saturated(
    app_functions: dict[str, Any], queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sendmail.sending.sealing import new_key

    monkeypatch.setenv("SENDMAIL_MAX_QUEUED_BATCHES", "1")
    monkeypatch.setenv("SENDMAIL_SEALING_KEY", new_key())
    services.reset()
    from sendmail.sending.ledger import MemorySendLedger

    services.override(ledger=MemorySendLedger(), ses=StubQuota(), backlog=BacklogProbe(queue))
    queue.send_message("a")
    queue.send_message("b")
    client = FakeDurableClient()
    aws = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": ["a@example.com"],
        "subject": "s",
        "body": "b",
    }
    user = {
        "provider": "GMAIL",
        "senderEmail": "me@gmail.com",
        "password": "p",
        "recipientEmails": ["a@example.com"],
        "subject": "s",
        "body": "b",
    }
    for name, path, body in (
        ("aws_send", "/api/v1/emails/aws-send", aws),
        ("user_send", "/api/v1/emails/user-send", user),
    ):
        response = http.call(app_functions, name, path, method="POST", body=body, client=client)
        assert response.status_code == 429, response.get_body()
        assert b"internal batch queue is saturated" in response.get_body()
        assert int(response.headers["Retry-After"]) > 0
    assert client.started == []
