"""Shared fixtures. Real servers live in tests/support/ as pytest plugins, one module each."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.support.ses", "tests.support.smtp", "tests.support.azurite"]


@pytest.fixture(scope="session")
def _mailctl_salt_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("mailctl") / "salt")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, _mailctl_salt_file: str) -> Iterator[None]:
    """Every test starts from the embedded defaults, whatever the developer's shell holds (and
    mailctl keeps its installation salt out of the developer's home), and leaves the
    environment as it found it: a variable a test (or code it runs, such as devhost's embedded
    defaults) set directly would otherwise reach every later test of the worker — and the
    devhost processes they start."""
    before = dict(os.environ)
    monkeypatch.setenv("MAILCTL_SALT_FILE", _mailctl_salt_file)
    from sendmail import services
    from sendmail.platform.settings import Settings
    from sendmail.sending.ledger import MemorySendLedger

    for name in Settings.env_names():
        monkeypatch.delenv(name, raising=False)
    services.reset()
    # The Table ledger is tested against Azurite (test_ledger.py); elsewhere an in-memory one.
    # So are the event store and the suppression list (test_event_store.py, test_suppression.py).
    from sendmail.admission.guard import AccountGuard, MemoryGuardStore
    from sendmail.admission.logins import MemoryLoginGuard
    from sendmail.admission.reservations import MemoryReservations
    from sendmail.feedback.event_store import MemoryEventStore
    from sendmail.feedback.replays import MemoryProcessedMessages
    from sendmail.feedback.suppression import MemorySuppressionList
    from sendmail.platform.blobs import MemoryBlobStore
    from sendmail.sending.secrets import MemoryRows, SecretStore
    from sendmail.sending.sends import MemorySends

    services.override(
        ledger=MemorySendLedger(),
        events=MemoryEventStore(),
        suppressions=MemorySuppressionList(),
        sns_messages=MemoryProcessedMessages(),
        backlog=None,  # no work-item queue to probe unless a test brings one (test_backlog.py)
        preflight=None,  # no SES identity checks unless a test brings them (test_preflight.py)
        reservations=MemoryReservations(),  # the table itself: test_reservations.py
        login_guard=MemoryLoginGuard(limit=5),  # the table itself: test_logins.py
        secrets=SecretStore(MemoryRows(), MemoryRows(), services.sealer),  # test_secrets.py
        blobs=MemoryBlobStore(),  # Azurite's blob service: test_lists.py
        sends=MemorySends(),  # the table itself: test_sends.py
        guard=AccountGuard(MemoryGuardStore(), Settings()),  # the table: test_guard.py
    )
    yield
    services.reset()
    monkeypatch.undo()
    os.environ.clear()
    os.environ.update(before)


@pytest.fixture(scope="session")
def app_functions() -> dict[str, Any]:
    """Every function the app registers, by name (``get_functions`` works once per process)."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}
