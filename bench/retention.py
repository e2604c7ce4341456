"""Retention's purge rate against Azurite: sends and rows purged per second.

A real Azurite (blob and table services) holds sends as the app leaves them — the list, index
and content blobs; the ledger as SES batches write it (a row of up to 100 successes per group
commit, a row of failures); per recipient a Delivery event and its marker, and the counter
shards — and :func:`sendmail.retention.purge_expired` purges them, timed:

- **many small sends**: :data:`SMALL_SENDS` sends of :data:`SMALL` recipients (the per-send
  costs: the record's mark and delete, the blob listing, a range query per store);
- **one large send**: :data:`LARGE` recipients (the per-row costs: transactions of 100).

The Durable histories are a dictionary here (one purge call per instance, which the Functions
host serves: its own cost, not the app's). The events are written straight into the table in
the store's layout (recording them through SNS's path is what the events benchmark measures).

``python -m bench.retention`` (in ``make bench``); results in ``docs/benchmarks/retention.json``
and between ``<!-- retention:begin -->`` and ``<!-- retention:end -->`` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.sending import OUT_DIR, write_between_markers

SMALL_SENDS = 200
SMALL = 50
LARGE = 20_000
LANES = 4
BATCH = 500


class Histories:
    def __init__(self) -> None:
        self.live: set[str] = set()

    def instances(self, send_id: str, lanes: int) -> list[str]:
        return [*(f"{send_id}:lane{n}" for n in range(lanes)), send_id]

    def running(self, instance_id: str) -> bool:
        return False

    def purge(self, instance_id: str) -> int:
        if instance_id in self.live:
            self.live.remove(instance_id)
            return 1
        return 0


def _seed(stores: Any, events_table: Any, histories: Histories, send_id: str, total: int) -> int:
    """One finished send of ``total`` recipients; how many table rows and blobs it left."""
    from sendmail.platform.tables import table_key
    from sendmail.sending.jobs import Mail, batch_bounds, ledger_key
    from sendmail.sending.lists import store_send
    from sendmail.sending.sends import SendRecord

    finished = datetime.now(UTC) - timedelta(days=40)
    addresses = [f"user{i:07d}@example.com" for i in range(total)]
    lanes = min(LANES, total)
    store_send(
        stores.blobs, send_id, addresses, Mail(sender="se@aifactory.page", subject="s", body="b")
    )
    record = SendRecord(
        id=send_id,
        kind="ses",
        total=total,
        lanes=lanes,
        batch_size=BATCH,
        list_ref=send_id,
        created=finished,
    )
    stores.sends.create(record)
    rows = 3 + 1  # blobs and the record
    for first, count in batch_bounds(total, lanes, BATCH):
        key = ledger_key(send_id, first)
        for start in range(0, count - 1, 100):  # the group commit's rows
            stores.ledger.record_many(
                key,
                {
                    i: f"<{send_id}.{first + i}@ses>"
                    for i in range(start, min(start + 100, count - 1))
                },
            )
            rows += 1
        stores.ledger.record_failures(key, {count - 1: ("SES_MESSAGE_REJECTED", "rejected")})
        rows += 1
    partition = table_key(send_id)
    entities: list[dict[str, Any]] = []
    shards: dict[str, int] = {}
    for i, address in enumerate(addresses):
        entities.append(
            {
                "PartitionKey": partition,
                "RowKey": f"e:20261201T100000.{i % 1000:03d}Z:{i:012d}:0000",
                "Recipient": address,
                "MessageId": f"m{i}",
                "Type": "Delivery",
                "EventTime": "2026-12-01T10:00:00.000Z",
            }
        )
        entities.append({"PartitionKey": partition, "RowKey": f"m:Delivery:{table_key(address)}"})
        shard = f"c:{zlib.crc32(address.encode()) % 16:02d}"
        shards[shard] = shards.get(shard, 0) + 1
    entities += [{"PartitionKey": partition, "RowKey": s, "Delivery": n} for s, n in shards.items()]
    for start in range(0, len(entities), 100):
        events_table.submit_transaction([("upsert", e) for e in entities[start : start + 100]])
    rows += len(entities)
    stores.sends.finish(send_id, total - 1, 1, finished)
    histories.live.update(histories.instances(send_id, lanes))
    return rows


def _case(azurite: Any, sends: int, recipients: int) -> dict[str, Any]:
    import uuid

    from azure.data.tables import TableClient
    from azure.storage.blob import ContainerClient

    from sendmail.feedback.event_store import TableEventStore
    from sendmail.platform.blobs import AzureBlobStore
    from sendmail.retention import Stores, purge_expired
    from sendmail.sending.ledger import TableSendLedger
    from sendmail.sending.sends import TableSends

    tag = uuid.uuid4().hex[:8]

    def table(name: str) -> TableClient:
        return TableClient.from_connection_string(azurite.connection_string, f"{name}{tag}")

    events_table = table("Events")
    events_table.create_table()
    stores = Stores(
        sends=TableSends(table("Sends")),
        blobs=AzureBlobStore(
            ContainerClient.from_connection_string(azurite.connection_string, f"sends-{tag}")
        ),
        ledger=TableSendLedger(table("Ledger")),
        events=TableEventStore(events_table),
    )
    histories = Histories()
    rows = sum(
        _seed(stores, events_table, histories, f"s{n:05d}{tag}", recipients) for n in range(sends)
    )
    started = time.perf_counter()
    purged = purge_expired(stores, histories, now=datetime.now(UTC), days=30, budget_seconds=3600)
    seconds = time.perf_counter() - started
    if purged.sends != sends or purged.unfinished or histories.live:
        raise RuntimeError(f"the purge left work: {purged.summary()}")
    return {
        "sends": sends,
        "recipients": recipients,
        "rows": rows,
        "instances": purged.instances,
        "seconds": round(seconds, 3),
        "sends_per_s": round(sends / seconds, 2),
        "rows_per_s": round(rows / seconds),
        "recipients_per_s": round(sends * recipients / seconds),
    }


def table_text(results: dict[str, Any]) -> str:
    lines = [
        "| case | sends | recipients each | rows and blobs | seconds | sends/s | rows/s "
        "| recipients/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['sends']} | {r['recipients']:,} | {r['rows']:,} | {r['seconds']} | "
            f"{r['sends_per_s']} | {r['rows_per_s']:,} | {r['recipients_per_s']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller cases (a smoke run)")
    args = parser.parse_args()
    from devhost.emulators.azurite import start_azurite

    small, large = (20, 2000) if args.quick else (SMALL_SENDS, LARGE)
    with start_azurite(("blob", "table")) as azurite:
        results = {
            "many small sends": _case(azurite, small, SMALL),
            "one large send": _case(azurite, 1, large),
        }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        (OUT_DIR / "retention.json").write_text(
            json.dumps(results, indent=1) + "\n", encoding="utf-8"
        )
        write_between_markers("retention", table_text(results))
    print(table_text(results))


if __name__ == "__main__":
    main()
