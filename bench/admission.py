"""What the admission checks cost per request, next to the same request without them.

The real ``aws_send`` HTTP function runs in-process against a real Azurite (tables and queues)
with SES's quota read stubbed (the same for both: it is not what is measured) and a recording
Durable client (starting an orchestration is the host's cost, not the checks'). Measured:

- **baseline**: no ``Idempotency-Key``, no work-item queue probe, reservations off (an unlimited
  quota skips them);
- **checks**: a fresh ``Idempotency-Key`` (one table insert), the work-item queue probe (one
  queue read) and a quota reservation (one partition read, one transaction), each alone and
  all together. Each send's reservation is released after its request (untimed), as the send's
  end releases it: the partition holds the running sends' rows, not every send's.

Reported: median and p90 milliseconds per request over ``--requests`` requests each, the ratio,
and the storage calls each check makes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any


def _run(requests: int) -> dict[str, Any]:
    import function_app
    from sendmail import services
    from sendmail.admission.backlog import BacklogProbe
    from sendmail.admission.idempotency import TableIdempotencyStore
    from sendmail.admission.reservations import TableReservations
    from sendmail.platform.blobs import MemoryBlobStore
    from sendmail.sending.ledger import MemorySendLedger
    from sendmail.sending.sends import MemorySends
    from sendmail.sending.ses import SendQuota
    from tests.support.azurite import start_azurite
    from tests.support.durable import FakeDurableClient
    from tests.support.http import StubQuota, call

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    body = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": [f"r{i}@example.com" for i in range(100)],
        "subject": "s",
        "body": "b",
    }
    limited = SendQuota(max_24_hour_send=10**9, max_send_rate=14, sent_last_24_hours=0)
    unlimited = SendQuota(max_24_hour_send=-1, max_send_rate=14, sent_last_24_hours=0)
    with start_azurite(("queue", "table")) as azurite:
        from azure.data.tables import TableClient
        from azure.storage.queue import QueueClient

        queue = QueueClient.from_connection_string(
            azurite.connection_string, queue_name="sendmail-workitems"
        )
        queue.create_queue()
        tables = {
            name: TableClient.from_connection_string(azurite.connection_string, table_name=name)
            for name in ("BenchIdempotency", "BenchQuota")
        }

        def timed(*, key: bool, probe: bool, reserve: bool) -> list[float]:
            services.reset()
            services.override(
                ledger=MemorySendLedger(),
                # the list and the record in memory: this measures the admission checks alone
                blobs=MemoryBlobStore(),
                sends=MemorySends(),
                ses=StubQuota(limited if reserve else unlimited),
                idempotency=TableIdempotencyStore(tables["BenchIdempotency"]),
                reservations=TableReservations(tables["BenchQuota"]),
                backlog=BacklogProbe(queue) if probe else None,
            )
            times = []
            for _ in range(requests):
                headers = {"Idempotency-Key": uuid.uuid4().hex} if key else {}
                client = FakeDurableClient()
                started = time.perf_counter()
                response = call(
                    functions,
                    "aws_send",
                    "/api/v1/emails/aws-send",
                    method="POST",
                    body=body,
                    headers=headers,
                    client=client,
                )
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 202, response.get_body()
                # the send ends (its activity releases the reservation): a few rows at a time
                services.reservations().release(client.instance_ids[0])
            return times

        timed(key=True, probe=True, reserve=True)  # warm up: tables, clients, imports
        baseline = timed(key=False, probe=False, reserve=False)
        only = {
            "Idempotency-Key only": timed(key=True, probe=False, reserve=False),
            "queue probe only": timed(key=False, probe=True, reserve=False),
            "reservation only": timed(key=False, probe=False, reserve=True),
        }
        checks = timed(key=True, probe=True, reserve=True)

    def summary(times: list[float]) -> dict[str, float]:
        ordered = sorted(times)
        return {
            "median_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[int(len(ordered) * 0.9)], 2),
        }

    base, full = summary(baseline), summary(checks)
    return {
        "requests": requests,
        "baseline (no key, no probe, no reservation)": base,
        **{name: summary(times) for name, times in only.items()},
        "with the checks": full,
        "median ratio": round(full["median_ms"] / base["median_ms"], 2),
        "median added ms": round(full["median_ms"] - base["median_ms"], 2),
        "storage calls per request": {
            "Idempotency-Key (fresh key)": "1 table insert (a repeat: 1 insert refused + 1 read)",
            "work-item queue probe": "1 queue properties read",
            "quota reservation": "1 partition query + 1 entity group transaction",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(_run(args.requests), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
