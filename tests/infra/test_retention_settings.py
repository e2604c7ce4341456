"""The retention timer's app settings in the Bicep: the host resolves the timer's
``%SENDMAIL_RETENTION_SCHEDULE%`` from its app settings and refuses the function when the setting
is missing, so the main app must always carry it (api/retention.py)."""

from __future__ import annotations

from tests.infra import policies
from tests.infra.bicep import Project, text


def test_the_main_app_carries_the_retention_settings(infra: Project) -> None:
    settings = policies.app_settings(infra)

    assert "SENDMAIL_RETENTION_SCHEDULE" in settings
    assert "SENDMAIL_RETENTION_DAYS" in settings
    _, node = settings["SENDMAIL_RETENTION_SCHEDULE"]
    assert text(node) == "retentionSchedule"
