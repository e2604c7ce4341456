"""Route templates, local.settings.json, host.json, keys and embedded defaults."""

from __future__ import annotations

import json
import os
import stat

import pytest

from devhost.config import KEY_ENV, function_key, load_host_json, load_local_settings
from devhost.embedded import (
    PUBLIC_BASE_URL_ENV,
    SEALING_KEY_ENV,
    UNSUBSCRIBE_KEYS_ENV,
    ensure_public_base_url,
    ensure_sealing_key,
    ensure_unsubscribe_keys,
    start_embedded,
)
from devhost.routing import RouteTemplate


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("api/v1/emails/{id}", "/api/v1/emails/abc", {"id": "abc"}),
        ("api/v1/emails/{id}", "/API/V1/Emails/abc/", {"id": "abc"}),
        ("api/v1/emails/{id}", "/api/v1/emails", None),
        ("api/items/{id:int}", "/api/items/-12", {"id": "-12"}),
        ("api/items/{id:int}", "/api/items/x", None),
        (
            "api/g/{id:guid}",
            "/api/g/1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            {"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
        ),
        ("api/g/{id:guid}", "/api/g/not-a-guid", None),
        ("api/opt/{a}/{b?}", "/api/opt/1", {"a": "1"}),
        ("api/files/{*path}", "/api/files/a/b%20c", {"path": "a/b c"}),
        ("api/len/{code:length(3)}", "/api/len/abcd", None),
    ],
)
def test_route_templates(template, path, expected):
    assert RouteTemplate(template).match(path) == expected


def test_literal_routes_sort_before_parameterised_ones():
    routes = sorted(
        [RouteTemplate("api/v1/emails/{id}"), RouteTemplate("api/v1/emails/aws-send")],
        key=lambda r: r.sort_key,
    )
    assert routes[0].template == "api/v1/emails/aws-send"


def test_local_settings_do_not_override_the_environment(tmp_path, monkeypatch):
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"DEVHOST_TEST_A": "from-file", "DEVHOST_TEST_B": "from-file"}})
    )
    monkeypatch.setenv("DEVHOST_TEST_A", "from-env")
    monkeypatch.delenv("DEVHOST_TEST_B", raising=False)
    applied = load_local_settings(tmp_path)
    assert applied == ["DEVHOST_TEST_B"]
    assert os.environ["DEVHOST_TEST_A"] == "from-env"
    assert os.environ["DEVHOST_TEST_B"] == "from-file"
    monkeypatch.delenv("DEVHOST_TEST_B")


def test_host_json_sizes_the_engine(tmp_path):
    (tmp_path / "host.json").write_text(
        json.dumps(
            {"extensions": {"durableTask": {"hubName": "Hub", "maxConcurrentActivityFunctions": 3}}}
        )
    )
    settings = load_host_json(tmp_path)
    assert (settings.task_hub, settings.max_concurrent_activities, settings.route_prefix) == (
        "Hub",
        3,
        "api",
    )


def test_function_key_from_env_else_persisted(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert function_key(tmp_path) == ("from-env", "env")
    monkeypatch.delenv(KEY_ENV)
    key, source = function_key(tmp_path)
    assert source == "generated"
    assert function_key(tmp_path) == (key, "state")
    assert stat.S_IMODE((tmp_path / "function-key").stat().st_mode) == 0o600


def test_sealing_key_is_generated_once_with_private_permissions(tmp_path, monkeypatch):
    from cryptography.fernet import Fernet

    monkeypatch.delenv(SEALING_KEY_ENV, raising=False)
    assert ensure_sealing_key(tmp_path) == "generated"
    key = os.environ[SEALING_KEY_ENV]
    Fernet(key.encode())  # a valid Fernet key
    assert stat.S_IMODE((tmp_path / "sealing-key").stat().st_mode) == 0o600
    monkeypatch.delenv(SEALING_KEY_ENV)
    assert ensure_sealing_key(tmp_path) == "state"
    assert os.environ[SEALING_KEY_ENV] == key
    monkeypatch.setenv(SEALING_KEY_ENV, "configured")
    assert ensure_sealing_key(tmp_path) == "env"
    assert os.environ[SEALING_KEY_ENV] == "configured"


def test_the_unsubscribe_key_is_generated_once_and_keeps_old_links_working(tmp_path, monkeypatch):
    from sendmail.sending.unsubscribe import UnsubscribeTokens

    monkeypatch.delenv(UNSUBSCRIBE_KEYS_ENV, raising=False)
    assert ensure_unsubscribe_keys(tmp_path) == "generated"
    token = UnsubscribeTokens(os.environ[UNSUBSCRIBE_KEYS_ENV]).make("send", "a@example.com")
    assert stat.S_IMODE((tmp_path / "unsubscribe-key").stat().st_mode) == 0o600
    monkeypatch.delenv(UNSUBSCRIBE_KEYS_ENV)  # a restart
    assert ensure_unsubscribe_keys(tmp_path) == "state"
    assert UnsubscribeTokens(os.environ[UNSUBSCRIBE_KEYS_ENV]).read(token) is not None
    monkeypatch.setenv(UNSUBSCRIBE_KEYS_ENV, "configured")
    assert ensure_unsubscribe_keys(tmp_path) == "env"
    assert os.environ[UNSUBSCRIBE_KEYS_ENV] == "configured"


def test_the_public_base_url_is_devhosts_own_unless_configured(monkeypatch):
    monkeypatch.delenv(PUBLIC_BASE_URL_ENV, raising=False)
    assert ensure_public_base_url(None) == "unset"
    assert PUBLIC_BASE_URL_ENV not in os.environ
    assert ensure_public_base_url("http://127.0.0.1:7071") == "devhost"
    assert os.environ[PUBLIC_BASE_URL_ENV] == "http://127.0.0.1:7071"
    monkeypatch.setenv(PUBLIC_BASE_URL_ENV, "https://mail.example.com")
    assert ensure_public_base_url("http://127.0.0.1:7071") == "env"
    assert os.environ[PUBLIC_BASE_URL_ENV] == "https://mail.example.com"


def test_no_emulators_changes_no_endpoints(tmp_path, monkeypatch):
    monkeypatch.setenv(SEALING_KEY_ENV, "configured")
    monkeypatch.setenv(UNSUBSCRIBE_KEYS_ENV, "configured")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("SENDMAIL_SMTP_HOST", raising=False)
    embedded = start_embedded(tmp_path, emulators=False)
    assert embedded.active() == []
    assert embedded.outbox() == []
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert "SENDMAIL_SMTP_HOST" not in os.environ
