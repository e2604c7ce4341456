"""What the app registers with the Functions host: every function, trigger, route and auth level."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from activities.names import (
    FAIL_BATCH,
    FINISH_SEND,
    FORGET_SECRET,
    RELEASE_QUOTA,
    SEND_SES_BATCH,
    SEND_SMTP_BATCH,
)
from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR


def describe(function: Any) -> tuple[str, str | None, tuple[str, ...], str | None]:
    trigger = function.get_trigger()
    route = getattr(trigger, "route", None)
    methods = tuple(str(getattr(m, "value", m)) for m in (getattr(trigger, "methods", None) or ()))
    auth = getattr(trigger, "auth_level", None)
    return trigger.type, route, methods, str(getattr(auth, "value", auth)) if auth else None


def test_the_app_registers_exactly_these_functions(app_functions: dict[str, Any]) -> None:
    found = {name: describe(f) for name, f in app_functions.items()}
    assert found == {
        "aws_send": ("httpTrigger", "v1/emails/aws-send", ("POST",), "function"),
        "user_send": ("httpTrigger", "v1/emails/user-send", ("POST",), "function"),
        "email_status": ("httpTrigger", "v1/emails/{id}", ("GET",), "function"),
        "email_recipients": ("httpTrigger", "v1/emails/{id}/recipients", ("GET",), "function"),
        "email_events": ("httpTrigger", "v1/emails/{id}/events", ("GET",), "function"),
        "ses_events": ("httpTrigger", "v1/events/ses", ("POST",), "function"),
        "suppression_get": ("httpTrigger", "v1/suppressions/{email}", ("GET",), "function"),
        "suppression_delete": ("httpTrigger", "v1/suppressions/{email}", ("DELETE",), "function"),
        "health": ("httpTrigger", "health", ("GET",), "anonymous"),
        "openapi_document": ("httpTrigger", "v1/openapi.json", ("GET",), "anonymous"),
        "docs": ("httpTrigger", "v1/docs/{*path}", ("GET",), "anonymous"),
        "v1_swagger_ui": ("httpTrigger", "swagger-ui/index.html", ("GET",), "anonymous"),
        SES_ORCHESTRATOR: ("orchestrationTrigger", None, (), None),
        SMTP_ORCHESTRATOR: ("orchestrationTrigger", None, (), None),
        LANE_ORCHESTRATOR: ("orchestrationTrigger", None, (), None),
        SEND_SES_BATCH: ("activityTrigger", None, (), None),
        SEND_SMTP_BATCH: ("activityTrigger", None, (), None),
        FAIL_BATCH: ("activityTrigger", None, (), None),
        FINISH_SEND: ("activityTrigger", None, (), None),
        RELEASE_QUOTA: ("activityTrigger", None, (), None),
        FORGET_SECRET: ("activityTrigger", None, (), None),
    }


def test_the_send_routes_have_a_durable_client(app_functions: dict[str, Any]) -> None:
    for name in ("aws_send", "user_send", "email_status", "email_recipients", "email_events"):
        types = {b.type for b in app_functions[name].get_bindings()}
        assert "durableClient" in types, name


def test_importing_the_app_does_not_load_heavy_clients() -> None:
    code = (
        "import sys, function_app; "
        "heavy = [m for m in ('boto3', 'botocore', 'azure.data.tables', 'azure.identity', "
        "'pydantic_settings', 'email_validator', 'cryptography', 'sendmail.sending.ses') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_importing_the_app_holds_the_sdk_loggers_at_warning() -> None:
    """In Azure the worker forwards INFO records to Application Insights, and azure-core's HTTP
    logging names Table rows (addresses) at INFO: the app holds it at WARNING on import."""
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG); import function_app; "
        "print(logging.getLogger('azure.core.pipeline.policies.http_logging_policy')"
        ".getEffectiveLevel(), logging.getLogger('botocore.endpoint').getEffectiveLevel())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == [str(logging.WARNING)] * 2


def test_request_telemetry_does_not_record_urls() -> None:
    """A route value can be an address (/api/v1/suppressions/{email}). With the extended HTTP
    collection the host's Application Insights request telemetry is ASP.NET Core's, which
    records the URL; without it, a request is named after its function (docs/deploy.md)."""
    host = json.loads((Path(__file__).resolve().parents[1] / "host.json").read_text())
    options = host["logging"]["applicationInsights"]["httpAutoCollectionOptions"]
    assert options["enableHttpTriggerExtendedInfoCollection"] is False
