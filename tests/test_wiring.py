"""What the app registers with the Functions host: every function, trigger, route and auth level."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from activities.names import (
    FAIL_BATCH,
    FINISH_SEND,
    FORGET_SECRET,
    READ_CONTROL,
    RELEASE_QUOTA,
    SEND_FAILED,
    SEND_SES_BATCH,
    SEND_SMTP_BATCH,
    START_SCHEDULED,
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
        "email_pause": ("httpTrigger", "v1/emails/{id}/pause", ("POST",), "function"),
        "email_resume": ("httpTrigger", "v1/emails/{id}/resume", ("POST",), "function"),
        "email_cancel": ("httpTrigger", "v1/emails/{id}/cancel", ("POST",), "function"),
        "account_get": ("httpTrigger", "v1/account", ("GET",), "function"),
        "account_guard_reset": ("httpTrigger", "v1/account/guard/reset", ("POST",), "function"),
        "ses_events": ("httpTrigger", "v1/events/ses", ("POST",), "function"),
        "unsubscribe": ("httpTrigger", "v1/unsubscribe/{token}", ("POST",), "anonymous"),
        "unsubscribe_page": ("httpTrigger", "v1/unsubscribe/{token}", ("GET",), "anonymous"),
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
        SEND_FAILED: ("activityTrigger", None, (), None),
        RELEASE_QUOTA: ("activityTrigger", None, (), None),
        FORGET_SECRET: ("activityTrigger", None, (), None),
        START_SCHEDULED: ("activityTrigger", None, (), None),
        READ_CONTROL: ("activityTrigger", None, (), None),
        "deliver_webhook": ("queueTrigger", None, (), None),
        "retention": ("timerTrigger", None, (), None),
    }


def test_webhook_deliveries_are_read_from_their_own_queue(app_functions: dict[str, Any]) -> None:
    """Not the task hub's: a slow endpoint never holds the sends' slots (outbox.py)."""
    from activities.webhooks import WEBHOOK_QUEUE
    from sendmail.feedback.webhooks.outbox import QUEUE_NAME

    (binding,) = app_functions["deliver_webhook"].get_bindings()
    assert binding.type == "queueTrigger"
    assert (binding.queue_name, binding.connection) == (QUEUE_NAME, "AzureWebJobsStorage")
    assert WEBHOOK_QUEUE == QUEUE_NAME


def test_the_send_routes_have_a_durable_client(app_functions: dict[str, Any]) -> None:
    for name in (
        "aws_send",
        "user_send",
        "email_status",
        "email_recipients",
        "email_events",
        "email_pause",
        "email_resume",
        "email_cancel",
    ):
        types = {b.type for b in app_functions[name].get_bindings()}
        assert "durableClient" in types, name


@pytest.mark.parametrize("functions", ["all", "public"])
def test_importing_the_app_does_not_load_heavy_clients(functions: str) -> None:
    code = (
        "import sys, function_app; "
        "heavy = [m for m in ('boto3', 'botocore', 'azure.data.tables', 'azure.identity', "
        "'pydantic_settings', 'email_validator', 'cryptography', 'sendmail.sending.ses', "
        "'opentelemetry.metrics', 'opentelemetry.sdk', 'azure.monitor') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=app_environment(functions),
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


# -- SENDMAIL_FUNCTIONS: the public app --------------------------------------------------------

#: What the public app (SENDMAIL_FUNCTIONS=public, docs/deploy.md "What stays public") serves.
PUBLIC_APP_FUNCTIONS = {
    "unsubscribe": ("httpTrigger", "v1/unsubscribe/{token}", ("POST",), "anonymous"),
    "unsubscribe_page": ("httpTrigger", "v1/unsubscribe/{token}", ("GET",), "anonymous"),
    "ses_events": ("httpTrigger", "v1/events/ses", ("POST",), "function"),
    "health": ("httpTrigger", "health", ("GET",), "anonymous"),
}

#: Prints {name: [trigger, route, methods, auth, binding types]} of the app as the host indexes it
#: (``get_functions`` works once per process: one process per selection).
INDEX = """
import json, function_app
found = {}
for f in function_app.app.get_functions():
    t = f.get_trigger()
    auth = getattr(t, "auth_level", None)
    found[f.get_function_name()] = [
        t.type,
        getattr(t, "route", None),
        [str(getattr(m, "value", m)) for m in (getattr(t, "methods", None) or ())],
        str(getattr(auth, "value", auth)) if auth else None,
        sorted({b.type for b in f.get_bindings()}),
    ]
print(json.dumps(found))
"""


def app_environment(functions: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SENDMAIL_FUNCTIONS"}
    if functions is not None:
        env["SENDMAIL_FUNCTIONS"] = functions
    return env


def indexed(functions: str | None) -> dict[str, list[Any]]:
    result = subprocess.run(
        [sys.executable, "-c", INDEX],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        env=app_environment(functions),
    )
    found: dict[str, list[Any]] = json.loads(result.stdout)
    return found


def test_the_public_app_registers_only_the_public_routes() -> None:
    """No orchestrator, activity or entity (so no task-hub worker starts: function_app.py) and
    no Durable client: the public app's identity has no access to the task hub's queues."""
    found = indexed("public")
    assert {name: (t, r, tuple(m), a) for name, (t, r, m, a, _) in found.items()} == (
        PUBLIC_APP_FUNCTIONS
    )
    for name, (*_, bindings) in found.items():
        assert set(bindings) <= {"httpTrigger", "http"}, name


def test_by_default_the_app_registers_everything(app_functions: dict[str, Any]) -> None:
    everything = {name: describe(f) for name, f in app_functions.items()}
    for functions in (None, "all"):
        found = indexed(functions)
        assert {name: (t, r, tuple(m), a) for name, (t, r, m, a, _) in found.items()} == (
            everything
        ), functions
    assert set(PUBLIC_APP_FUNCTIONS.items()) < set(everything.items())


@pytest.mark.parametrize("functions", ["", "Public", "public,all"])
def test_an_unknown_selection_stops_the_app(functions: str) -> None:
    """A mistyped setting is an app that does not start, never one serving the wrong routes."""
    result = subprocess.run(
        [sys.executable, "-c", "import function_app"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        env=app_environment(functions),
    )
    assert result.returncode != 0
    assert "SENDMAIL_FUNCTIONS must be one of ('all', 'public')" in result.stderr


def test_the_selections_are_the_settings_values() -> None:
    """function_app.py reads the setting itself (pydantic would make the import heavy): its
    values and default are Settings' own."""
    import function_app
    from sendmail.platform.settings import Settings

    field = Settings.model_fields["SENDMAIL_FUNCTIONS"]
    assert get_args(field.annotation) == function_app.FUNCTION_SETS
    assert field.default == function_app.ALL_FUNCTIONS
