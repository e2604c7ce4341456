"""The retention timer under devhost, end to end: a real send through the app and its emulators,
then the timer (every 2 s, on its ``%SENDMAIL_RETENTION_SCHEDULE%``, with the Durable client
devhost hands a timer function) purges it once it has been finished longer than
``SENDMAIL_RETENTION_DAYS`` (0.0001 days: 8.64 s) — the routes answer 404, and nothing of it is
left in Durable, the blobs, the ledger, the events or the sends table (devhost's Azurite, read
directly). What exactly is purged and what is kept: tests/test_retention.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import ContainerClient

from tests.devhost.conftest import FAST_SES, real_app

pytestmark = pytest.mark.e2e

RETENTION = {"SENDMAIL_RETENTION_DAYS": "0.0001", "SENDMAIL_RETENTION_SCHEDULE": "*/2 * * * * *"}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


class Storage:
    """devhost's Azurite, as the app's stores lay the send out."""

    def __init__(self, state: Path) -> None:
        connection = (state / "azurite" / "connection-string").read_text(encoding="utf-8").strip()
        self.tables = TableServiceClient.from_connection_string(connection)
        self.container = ContainerClient.from_connection_string(connection, "sendmail-sends")

    def rows(self, table: str, low: str, high: str) -> int:
        client = self.tables.get_table_client(table)
        found = client.query_entities(
            "PartitionKey ge @low and PartitionKey lt @high",
            parameters={"low": low, "high": high},
            select=["RowKey"],
        )
        return len(list(found))

    def left(self, send_id: str) -> dict[str, int]:
        return {
            "blobs": len(list(self.container.list_blobs(name_starts_with=f"{send_id}/"))),
            "record": self.rows("SendMailSends", send_id, f"{send_id}~"),
            "ledger": self.rows("SendMailLedger", f"{send_id}:", f"{send_id};"),
            "events": self.rows("SendMailEvents", send_id, f"{send_id}~"),
        }


def test_the_retention_timer_purges_a_finished_send_under_devhost(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with real_app(state, {**FAST_SES, **RETENTION}) as app:
        answer = app.request(
            "POST",
            "/api/v1/emails/aws-send",
            headers={"Prefer": "wait=30"},
            json={
                "senderEmail": "se@aifactory.page",
                "recipientEmails": ["success@simulator.amazonses.com", "kim@example.com"],
                "subject": "보관 기간",
                "body": "곧 지워집니다.",
            },
        )
        assert answer.status_code == 200, answer.text
        send_id = answer.json()["id"]
        parent = app.status(send_id)
        assert parent.status_code == 200
        lanes = int(parent.json()["customStatus"]["lanes"])
        storage = Storage(state)
        stored = storage.left(send_id)
        assert stored["blobs"] == 3
        assert stored["record"] == 1
        assert stored["ledger"] >= 1

        def route(path: str = "") -> int:
            return app.request("GET", f"/api/v1/emails/{send_id}{path}").status_code

        assert route() == 200
        wait_for(lambda: route() == 404, 60, "the status route's 404")
        wait_for(lambda: storage.left(send_id)["record"] == 0, 30, "the record to go (last)")

        assert storage.left(send_id) == {"blobs": 0, "record": 0, "ledger": 0, "events": 0}
        assert route("/recipients") == 404
        assert route("/events") == 404
        assert app.status(send_id).status_code == 404
        for lane in range(lanes):
            assert app.status(f"{send_id}:lane{lane}").status_code == 404
        timer: dict[str, Any] = next(
            t
            for t in app.request("GET", "/_dev/triggers").json()["triggers"]
            if t["function"] == "retention"
        )
        assert timer["schedule"] == RETENTION["SENDMAIL_RETENTION_SCHEDULE"]
        assert {run["outcome"] for run in timer["lastRuns"]} == {"succeeded"}
        assert "retention: sends 1, instances" in app.log()
