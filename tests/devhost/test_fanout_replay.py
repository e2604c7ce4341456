"""``fan_out`` under the real Durable SDK, replayed by devhost's engine (not the fake context).

The orchestrators' unit tests drive ``fan_out`` with a stand-in context; here the SDK itself
decides what a failed ``call_activity_with_retry`` inside ``task_any`` looks like, and whether a
failed reconcile raises into the orchestrator, by replaying real histories.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import azure.durable_functions as df
import pytest

from activities.names import RECONCILE_BATCH
from devhost.app_loader import FunctionIndex, index_functions
from devhost.durable.engine import Engine, EngineOptions
from devhost.durable.history import TERMINAL_STATUSES
from devhost.durable.store import Store
from devhost.invoker import Worker
from orchestrators import fanout

app = df.DFApp()
#: What the test activities do, set per test: batch number -> "ok" | "fail"; reconcile too.
BEHAVIOUR: dict[str, str] = {}


@app.function_name("fan_out_probe")
@app.orchestration_trigger(context_name="context")
def fan_out_probe(context: df.DurableOrchestrationContext) -> Any:
    sizes = [2, 2, 2]
    inputs = [{"ledgerKey": f"{context.instance_id}:{n}", "n": n} for n in range(3)]
    seen: list[int] = []
    results = yield from fanout.fan_out(
        context,
        "probe_batch",
        inputs,
        sizes,
        2,
        lambda partial: seen.append(sum(r is not None for r in partial)),
    )
    return {"results": results, "progress": seen}


@app.function_name("probe_batch")
@app.activity_trigger(input_name="batch")
def probe_batch(batch: dict[str, Any]) -> dict[str, Any]:
    n = batch["n"]
    if BEHAVIOUR.get(str(n)) == "fail":
        raise RuntimeError(f"batch {n} cannot reach its ledger")
    return {"messageIds": [f"m{n}-0", f"m{n}-1"], "failures": []}


@app.function_name(RECONCILE_BATCH)
@app.activity_trigger(input_name="batch")
def reconcile(batch: dict[str, Any]) -> dict[str, Any]:
    if BEHAVIOUR.get("reconcile") == "fail":
        raise RuntimeError("the ledger is down too")
    return {
        "messageIds": ["recorded", None],
        "failures": [{"index": 1, "code": "BATCH_FAILED", "message": "not confirmed"}],
    }


_INDEX: list[FunctionIndex] = []


@pytest.fixture
def engine(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # Real retries, but 50 ms apart instead of 10 s, so the test runs in about a second.
    monkeypatch.setattr(
        fanout,
        "ACTIVITY_RETRY",
        df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=2),
    )
    if not _INDEX:
        _INDEX.append(index_functions(app))
    worker = Worker(sync_threads=4)
    engine = Engine(
        Store(tmp_path / "durable.sqlite3"),
        _INDEX[0],
        worker,
        EngineOptions(max_concurrent_activities=4, poll_interval=0.02),
    )
    engine.start()
    yield engine
    engine.stop()
    worker.stop()
    BEHAVIOUR.clear()


def finish(engine: Engine) -> Any:
    instance_id = engine.start_orchestration("fan_out_probe", None, json.dumps(None))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = engine.store.get_instance(instance_id)
        if row is not None and row.status in TERMINAL_STATUSES:
            assert row.status == "Completed", row.output
            return json.loads(row.output or "null")
        time.sleep(0.02)
    raise TimeoutError(instance_id)


def test_all_batches_succeed_in_input_order(engine: Engine) -> None:
    out = finish(engine)
    assert [r["messageIds"] for r in out["results"]] == [
        ["m0-0", "m0-1"],
        ["m1-0", "m1-1"],
        ["m2-0", "m2-1"],
    ]


def test_a_batch_failing_after_its_retries_is_reconciled_and_the_send_completes(
    engine: Engine,
) -> None:
    BEHAVIOUR["1"] = "fail"
    out = finish(engine)
    assert out["results"][1]["messageIds"] == ["recorded", None]
    assert out["results"][0]["messageIds"] == ["m0-0", "m0-1"]
    assert out["results"][2]["messageIds"] == ["m2-0", "m2-1"]


def test_a_batch_whose_reconcile_fails_too_is_unknown_and_the_send_completes(
    engine: Engine,
) -> None:
    BEHAVIOUR["0"] = "fail"
    BEHAVIOUR["reconcile"] = "fail"
    out = finish(engine)
    unknown = out["results"][0]
    assert unknown["messageIds"] == [None, None]
    assert {f["code"] for f in unknown["failures"]} == {"DELIVERY_UNKNOWN"}
    assert out["results"][1]["messageIds"] == ["m1-0", "m1-1"]
