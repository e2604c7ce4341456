"""Calling the app's HTTP functions as the Functions host does, and what they need around them.

``call`` builds a ``func.HttpRequest`` and runs the registered function (with a Durable client
when it takes one); ``StubQuota`` stands in for SES's ``GetSendQuota`` in the admission check
(SES itself is exercised against moto in test_ses.py); ``completed`` is a finished send's status.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import azure.functions as func

from orchestrators.names import SES_ORCHESTRATOR
from sendmail.sending.ses import SendQuota
from tests.support.durable import FakeDurableClient, status

BASE = "http://localhost:7071"


class StubQuota:
    def __init__(self, quota: SendQuota | None = None) -> None:
        self.quota = quota or SendQuota(max_24_hour_send=-1, max_send_rate=14, sent_last_24_hours=0)
        self.reads = 0

    def get_quota(self) -> SendQuota:
        self.reads += 1
        return self.quota


def call(
    app_functions: dict[str, Any],
    name: str,
    path: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    client: FakeDurableClient | None = None,
) -> func.HttpResponse:
    """Run HTTP function ``name`` on a request for ``path``; ``body`` is bytes or JSON."""
    user_function = app_functions[name].get_user_function()
    raw = (
        body
        if isinstance(body, bytes)
        else (json.dumps(body).encode() if body is not None else b"")
    )
    req = func.HttpRequest(
        method=method,
        url=f"{BASE}{path}",
        headers=headers or {},
        params={},
        route_params=route_params or {},
        body=raw,
    )
    if client is not None:
        result = user_function.client_function(req=req, client=client)
    else:
        result = user_function(req)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    assert isinstance(result, func.HttpResponse)
    return result


def completed(instance_id: str, name: str = SES_ORCHESTRATOR) -> Any:
    """A finished SES send: one recipient sent, one rejected."""
    output = {
        "kind": "ses",
        "total": 2,
        "sent": 1,
        "failed": 1,
        "messageIds": ["0101-abc"],
        "failures": [
            {"recipient": "b@example.com", "code": "SES_MESSAGE_REJECTED", "message": "x"}
        ],
    }
    return status(instance_id, name, "Completed", output=output)
