"""A send's ``metadata``: validated at admission, stored with the send's record, echoed by the
status route (and, with the webhooks, in every event about the send)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrators.names import SES_ORCHESTRATOR
from sendmail.contract.errors import ValidationFailed
from sendmail.contract.models import AwsEmailRequest, Limits, UserEmailRequest, parse_request
from tests.support.durable import FakeDurableClient, status
from tests.support.http import StubQuota, call

LIMITS = Limits(max_recipients=5, max_subject_chars=50, max_body_bytes=100)
SEND = {
    "senderEmail": "se@aifactory.page",
    "recipientEmails": ["a@example.com"],
    "subject": "s",
    "body": "b",
}


def problem(metadata: Any, model: Any = AwsEmailRequest) -> str:
    body = {**SEND, "metadata": metadata}
    if model is UserEmailRequest:
        body.update(provider="GMAIL", password="app-password")
    with pytest.raises(ValidationFailed) as info:
        parse_request(model, json.dumps(body).encode(), LIMITS)
    return info.value.message


@pytest.mark.parametrize("model", [AwsEmailRequest, UserEmailRequest])
def test_metadata_is_optional_and_kept_as_given(model: Any) -> None:
    body = {**SEND, "metadata": {"campaign": "12월", "ticket": ""}}
    if model is UserEmailRequest:
        body.update(provider="GMAIL", password="app-password")

    request = parse_request(model, json.dumps(body).encode(), LIMITS)

    assert request.metadata == {"campaign": "12월", "ticket": ""}
    assert (
        parse_request(model, json.dumps({**body, "metadata": None}).encode(), LIMITS).metadata
        is None
    )


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({f"k{i}": "v" for i in range(11)}, "metadata must hold at most 10 keys"),
        ({"k": "v" * 257}, "metadata k: a value must be at most 256 characters"),
        ({"k": "line\nbreak"}, "without control characters"),
        ({"k": "bell\x07"}, "without control characters"),
        ({"": "v"}, "keys must be 1-40 characters"),
        ({"k" * 41: "v"}, "keys must be 1-40 characters"),
        ({"k": 1}, "metadata.k must be a string"),
        ({"k": None}, "metadata.k must be a string"),
        (["k", "v"], "metadata is invalid"),
    ],
)
def test_bad_metadata_is_400(metadata: Any, expected: str) -> None:
    assert expected in problem(metadata)


def test_the_status_route_echoes_the_metadata(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sendmail import services

    quota = StubQuota()
    monkeypatch.setattr(services, "ses_sender", lambda: quota)
    client = FakeDurableClient()
    metadata = {"campaign": "2026-12-newsletter", "requestedBy": "crm-42"}

    started = call(
        app_functions,
        "aws_send",
        "/api/v1/emails/aws-send",
        method="POST",
        body={**SEND, "metadata": metadata},
        client=client,
    )
    assert started.status_code == 202, started.get_body()
    instance_id = json.loads(started.get_body())["id"]
    client.statuses[instance_id] = [status(instance_id, SES_ORCHESTRATOR, "Pending")]
    answer = call(
        app_functions,
        "email_status",
        f"/api/v1/emails/{instance_id}",
        route_params={"id": instance_id},
        client=client,
    )

    assert json.loads(answer.get_body())["metadata"] == metadata
    assert metadata == services.sends().get(instance_id).metadata  # type: ignore[union-attr]
