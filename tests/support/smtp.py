"""Fixtures for a real SMTP server (``devhost.emulators.smtp_sink.SmtpSink``) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devhost.emulators.smtp_sink import SinkTlsMode, SmtpSink
from sendmail.platform.settings import Settings

StartSmtpSink = Callable[..., SmtpSink]


@pytest.fixture
def start_smtp_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartSmtpSink]:
    """Start sinks on demand (``start_smtp_sink(tls_mode="starttls")``); all stop at teardown."""
    sinks: list[SmtpSink] = []

    def start(tls_mode: SinkTlsMode = "implicit", **kwargs: Any) -> SmtpSink:
        sink = SmtpSink(
            tmp_path_factory.mktemp(f"smtp-sink-{tls_mode}"), tls_mode=tls_mode, **kwargs
        )
        sink.start()
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()


@pytest.fixture
def smtp_sink(start_smtp_sink: StartSmtpSink) -> SmtpSink:
    """An implicit-TLS (port 465 style) sink."""
    return start_smtp_sink("implicit")


@pytest.fixture
def smtp_sink_starttls(start_smtp_sink: StartSmtpSink) -> SmtpSink:
    """A STARTTLS (port 587 style) sink: STARTTLS required, AUTH only after it."""
    return start_smtp_sink("starttls")


@pytest.fixture(params=["implicit", "starttls"])
def smtp_sink_any_tls(request: pytest.FixtureRequest, start_smtp_sink: StartSmtpSink) -> SmtpSink:
    """The test runs once against each TLS mode."""
    return start_smtp_sink(request.param)


def sink_settings(sink: SmtpSink, **overrides: Any) -> Settings:
    """Settings pointing every provider at ``sink`` and trusting its CA (as the devhost does)."""
    values: dict[str, Any] = {
        "SENDMAIL_SMTP_HOST": sink.host,
        "SENDMAIL_SMTP_PORT": sink.port,
        "SENDMAIL_SMTP_TLS_MODE": "starttls" if sink.tls_mode == "starttls" else "implicit",
        "SENDMAIL_SMTP_CA_FILE": sink.ca_file,
        "SENDMAIL_SMTP_TIMEOUT_SECONDS": 10.0,
    }
    values.update(overrides)
    return Settings(**values)
