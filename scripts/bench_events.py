"""Measure SES event ingestion through devhost and the suppression check's cost per recipient.

    .venv/bin/python scripts/bench_events.py [--events 2000] [--out docs/benchmarks/events.json]

1. **Ingestion** — the real app under devhost (Azurite, its local SNS's key and certificate):
   signed SNS notifications posted to ``/api/v1/events/ses`` with the function key, as SNS
   delivers them (several at once). Next to it, the same requests refused at the first check
   (a topic not allowed: no signature check, no storage) — devhost's and the route's own cost,
   the baseline. Delivery events (one table transaction each) and Bounce events (also a
   suppression entry), at 1, 8 and 32 concurrent deliveries.
2. **Suppression check** — in process, against Azurite: the lookup an SES batch makes before
   calling SES, for batches of 500 and 5,000 recipients of a realistic domain mix (40% gmail.com,
   20% naver.com, 10% daum.net, 30% over 1,000 company domains) against a list of 10,000 entries
   of the same mix, 1% of the batch on it; point reads only, and by domain (what the service
   does); per recipient, next to the time a recipient takes anyway at the account's rate
   (1 / MaxSendRate).

Figures go to stdout as Markdown and, with ``--out``, as JSON. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from devhost.emulators.sns import SigningKey  # noqa: E402
from devhost.process import REPO_ROOT, DevhostProcess  # noqa: E402

FAST_SES = {"DEVHOST_SES_MAX_SEND_RATE": "2000", "DEVHOST_SES_MAX_24_HOUR_SEND": "1000000"}


def notification(
    signing: SigningKey, info: dict[str, str], send_id: str, n: int, kind: str, topic: str = ""
) -> dict[str, Any]:
    recipient = f"bench{n}-{uuid.uuid4().hex[:6]}@example.com"
    record: dict[str, Any] = {
        "eventType": kind,
        "mail": {
            "messageId": f"m{n}",
            "destination": [recipient],
            "tags": {"sendmail-send-id": [send_id]},
        },
    }
    if kind == "Delivery":
        record["delivery"] = {"recipients": [recipient], "smtpResponse": "250 ok"}
    else:
        record["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": recipient, "diagnosticCode": "550 5.1.1"}],
        }
    return signing.sign(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic or info["topicArn"],
            "Message": json.dumps(record),
            "Timestamp": "2026-12-01T10:00:00.000Z",
            "SigningCertURL": info["certUrl"],
        }
    )


def post_all(url: str, key: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    sessions: dict[int, requests.Session] = {}
    latencies: list[float] = []

    def post(indexed: tuple[int, dict[str, Any]]) -> int:
        import threading

        session = sessions.setdefault(threading.get_ident(), requests.Session())
        started = time.perf_counter()
        status = session.post(url, params={"code": key}, json=indexed[1], timeout=60).status_code
        latencies.append(time.perf_counter() - started)
        return status

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(post, enumerate(bodies)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "n": len(bodies),
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "per_second": round(len(bodies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "statuses": sorted(set(statuses)),
    }


def ingestion(events: int) -> list[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="bench-events-")) / "state"
    process = DevhostProcess(
        REPO_ROOT, state, env={**FAST_SES, "DEVHOST_LOG_LEVEL": "WARNING"}, emulators=True
    )
    process.start(timeout=120)
    rows: list[dict[str, Any]] = []
    try:
        info = json.loads((state / "sns" / "local-sns.json").read_text(encoding="utf-8"))
        signing = SigningKey.load_or_create(state / "sns")
        answer = process.request(
            "POST",
            "/api/v1/emails/aws-send",
            json={
                "senderEmail": "se@aifactory.page",
                "recipientEmails": ["warm@example.com"],
                "subject": "s",
                "body": "b",
            },
            headers={"Prefer": "wait=30"},
        )
        send_id = answer.json()["id"]
        url = f"{process.base_url}/api/v1/events/ses"
        other = info["topicArn"].replace("devhost-ses-events", "not-allowed")
        for concurrency in (1, 8, 32):
            for label, kind, topic in (
                ("refused at the topic check (baseline)", "Delivery", other),
                ("Delivery: verified, recorded, counted", "Delivery", ""),
                ("Bounce: + suppression entry", "Bounce", ""),
            ):
                n = events if concurrency > 1 else max(200, events // 5)
                bodies = [notification(signing, info, send_id, i, kind, topic) for i in range(n)]
                row = post_all(url, process.key, bodies, concurrency)
                row["case"] = label
                rows.append(row)
                print(f"  {label:42} c={concurrency:2}: {row}", flush=True)
    finally:
        process.stop()
    return rows


def _address(rng: random.Random, n: int) -> str:
    """A recipient of a Korean company's list: 40% gmail.com, 20% naver.com, 10% daum.net, the
    rest spread over 1,000 company domains."""
    roll = rng.random()
    if roll < 0.4:
        domain = "gmail.com"
    elif roll < 0.6:
        domain = "naver.com"
    elif roll < 0.7:
        domain = "daum.net"
    else:
        domain = f"company{rng.randrange(1000)}.example"
    return f"person{n}@{domain}"


def suppression_cost() -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    from sendmail.feedback import suppression
    from sendmail.feedback.suppression import Suppression, suppressions_from_environment
    from sendmail.platform.tables import table_key
    from tests.support.azurite import start_azurite

    rng = random.Random(7)  # noqa: S311 (test data)
    rows: list[dict[str, Any]] = []
    with start_azurite(("table",)) as azurite:
        listed = suppressions_from_environment(
            {"AzureWebJobsStorage": azurite.connection_string},
            table_name="Bench" + uuid.uuid4().hex[:10],
        )
        now = datetime.now(UTC)
        listed.add(Suppression(email="first@example.com", reason="BOUNCE", created=now))
        entries = [_address(rng, n) for n in range(10_000)]  # the list: 10,000 addresses
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for address in entries:
            local, _, domain = address.rpartition("@")
            by_partition.setdefault(table_key(domain), []).append(
                {
                    "PartitionKey": table_key(domain),
                    "RowKey": table_key(local),
                    "Email": address,
                    "Reason": "BOUNCE",
                    "CreatedTime": now,
                }
            )
        for partition_rows in by_partition.values():
            for start in range(0, len(partition_rows), 100):
                chunk = partition_rows[start : start + 100]
                listed.client.submit_transaction([("create", r) for r in chunk])
        for batch in (500, 5000):
            # 1% of the batch is on the list, the rest are new addresses
            recipients = [_address(rng, 100_000 + n) for n in range(batch)]
            for n in range(0, batch, 100):
                recipients[n] = entries[n]
            for strategy, scan_min in (("point reads only", 10**9), ("by domain", 8)):
                suppression.SCAN_MIN_RECIPIENTS = scan_min
                listed.lookup(recipients[:50])  # warm the connection pool
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    found = listed.lookup(recipients)
                    times.append(time.perf_counter() - started)
                assert len(found) == len(range(0, batch, 100)), len(found)
                best = min(times)
                per = best / batch
                row = {
                    "batch": batch,
                    "strategy": strategy,
                    "seconds": round(best, 3),
                    "per_recipient_ms": round(per * 1000, 3),
                    "of_a_recipient_at_14_per_s": round(per * 14, 4),
                    "of_a_recipient_at_300_per_s": round(per * 300, 4),
                }
                rows.append(row)
                print(f"  suppression lookup: {row}", flush=True)
        suppression.SCAN_MIN_RECIPIENTS = 8
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print("ingestion through devhost:", flush=True)
    ingest = ingestion(args.events)
    print("suppression check:", flush=True)
    lookups = suppression_cost()
    if args.out is not None:
        args.out.write_text(
            json.dumps({"ingestion": ingest, "suppression": lookups}, indent=2) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
