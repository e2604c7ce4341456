"""The sending engine measured through devhost against the SES look-alike, next to baselines.

Every run starts the real app under devhost (Azurite ledger, real orchestrations) with
``AWS_ENDPOINT_URL`` pointing at :mod:`bench.ses_lookalike` in its own process: 50 ms per call,
SES's token-bucket rate limit answering 429, injected throttling and 5xx where asked. What the
look-alike accepted is the ground truth for "sent", "lost" and "duplicated".

- **throughput**: ``30 x rate`` recipients at ``MaxSendRate`` 14, 100 and 300/s; achieved
  recipients/s divided by the rate, next to :mod:`bench.naive` (a one-at-a-time boto3 loop)
  against the same look-alike.
- **storm**: 2,000 recipients at 100/s while SES throttles 30% and fails 2% of calls with 5xx;
  the naive loop in the same storm (botocore's own retries) next to it.
- **crash**: kill -9 of devhost (``host``) or of its whole process group (``group``) in the
  middle of 6,000 recipients at 300/s, restarted at once on the same state: lost and duplicated
  per trial, next to the calls the look-alike had in flight at the kill.
- **history**: Durable history events (and bytes) per recipient for a 50,000-recipient send.
- **cost**: devhost's CPU-seconds per 1,000 recipients of a 10,000-recipient send against a
  look-alike fast enough that the app is the bottleneck (3,000/s, 5 ms), with the ledger's group
  commit (``SENDMAIL_LEDGER_GROUP_MS=50``) and without it (``0``: one write per recipient, the
  old design), next to the naive loop's CPU per 1,000 in the same run (its thread's CPU time).

``python -m bench.sending [--only throughput,storm,crash,history,cost] [--quick]`` writes
``docs/benchmarks/sending.json``, the charts ``docs/benchmarks/*.png`` and the table between the
markers in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.naive import send_all
from bench.ses_lookalike import LookalikeHandle, start_lookalike
from devhost.process import REPO_ROOT, DevhostProcess

SENDER = "se@aifactory.page"
OUT_DIR = REPO_ROOT / "docs" / "benchmarks"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
LATENCY_MS = 50
#: The naive loop is timed on at most this many recipients (it runs at ~1/latency a second).
NAIVE_SAMPLE = 400


def recipients(count: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}{i:06d}@example.com" for i in range(count)]


@contextlib.contextmanager
def app_against(lookalike: LookalikeHandle, state: Path, **env: str) -> Iterator[DevhostProcess]:
    """The real app under devhost, its SES being the look-alike (Azurite for the ledger)."""
    settings = {
        "AWS_ENDPOINT_URL": lookalike.endpoint_url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "ap-northeast-2",
        "SENDMAIL_SES_MAX_RECIPIENTS": "100000",
        "DEVHOST_LOG_LEVEL": "WARNING",
        **env,
    }
    host = DevhostProcess(REPO_ROOT, state, env=settings, emulators=True)
    host.start(timeout=120)
    try:
        yield host
    finally:
        host.stop()
        host.session.close()


def post_send(host: DevhostProcess, to: list[str]) -> str:
    body = {"senderEmail": SENDER, "recipientEmails": to, "subject": "벤치마크", "body": "본문"}
    response = host.request("POST", "/api/v1/emails/aws-send", json=body, timeout=120)
    if response.status_code != 202:
        raise RuntimeError(f"aws-send answered {response.status_code}: {response.text[:300]}")
    return str(response.headers["Location"])


def wait_done(host: DevhostProcess, location: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = host.session.get(location, headers={"x-functions-key": host.key}, timeout=30)
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.2)
    raise TimeoutError(f"{location} did not finish in {timeout:.0f} s")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU-seconds (user + system) of process ``pid`` so far, or of its thread ``tid``."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accounting(lookalike: LookalikeHandle, expected: list[str]) -> dict[str, Any]:
    stats = lookalike.stats()
    delivered = lookalike.recipients()
    return {
        "lost": sum(1 for r in expected if delivered.get(r, 0) == 0),
        "duplicated": sum(max(0, n - 1) for n in delivered.values()),
        "calls": stats["calls"],
        "accepted": stats["accepted"],
        "throttled_calls": stats["throttled_rate"] + stats["throttled_injected"],
        "errors_5xx": stats["errors_5xx"],
        "max_in_flight": stats["max_in_flight"],
    }


# --- throughput ------------------------------------------------------------------------------


def throughput(lookalike: LookalikeHandle, rate: float, factor: int) -> dict[str, Any]:
    to = recipients(int(rate * factor))
    lookalike.configure(
        rate=rate, burst_seconds=1, latency_ms=LATENCY_MS, jitter_ms=5, throttle=0, errors=0
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        app_against(lookalike, Path(tmp) / "state") as host,
    ):
        lookalike.reset()
        assert host.proc is not None
        cpu_before = cpu_seconds(host.proc.pid)
        started = time.monotonic()
        location = post_send(host, to)
        status = wait_done(host, location, timeout=factor * 10 + 120)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(host.proc.pid) - cpu_before
    counts = accounting(lookalike, to)
    timeline = lookalike.timeline(1.0)
    achieved = len(to) / elapsed
    return {
        "rate": rate,
        "recipients": len(to),
        "seconds": round(elapsed, 2),
        "achieved_per_s": round(achieved, 1),
        "ratio": round(achieved / rate, 3),
        "sent": status["progress"]["sent"],
        "failed": status["progress"]["failed"],
        **counts,
        "throttled_fraction": round(counts["throttled_calls"] / max(1, counts["accepted"]), 4),
        "devhost_cpu_percent": round(100 * cpu / elapsed, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "timeline": [[b["t"], b["accepted"], b["throttled"]] for b in timeline["buckets"]],
    }


def naive(lookalike: LookalikeHandle, rate: float, count: int, **faults: float) -> dict[str, Any]:
    to = recipients(min(count, NAIVE_SAMPLE), prefix="n")
    lookalike.configure(
        rate=rate,
        burst_seconds=1,
        latency_ms=LATENCY_MS,
        jitter_ms=5,
        throttle=faults.get("throttle", 0.0),
        errors=faults.get("errors", 0.0),
    )
    lookalike.reset()
    try:
        result = send_all(to, endpoint_url=lookalike.endpoint_url)
        sent, failed, elapsed, ended = result.sent, result.failed, result.elapsed, "completed"
    except Exception as exc:  # the naive loop ends on what it does not catch, as a script would
        sent, failed, elapsed, ended = 0, {}, 0.0, f"stopped: {type(exc).__name__}"
    counts = accounting(lookalike, to)
    achieved = sent / elapsed if elapsed else 0.0
    return {
        "rate": rate,
        "recipients": len(to),
        "seconds": round(elapsed, 2),
        "achieved_per_s": round(achieved, 1),
        "ratio": round(achieved / rate, 3),
        "failed_by_code": failed,
        "ended": ended,
        **counts,
    }


# --- cost ------------------------------------------------------------------------------------

#: The look-alike for the cost runs: fast enough that the app, not SES, is what takes time.
COST_RATE = 3000
COST_LATENCY_MS = 5


def fast_lookalike(lookalike: LookalikeHandle) -> None:
    """The look-alike of the cost runs (and of bench.profile): the app sets the pace."""
    lookalike.configure(
        rate=COST_RATE,
        burst_seconds=1,
        latency_ms=COST_LATENCY_MS,
        jitter_ms=1,
        throttle=0,
        errors=0,
    )


def cost(lookalike: LookalikeHandle, count: int, group_ms: float) -> dict[str, Any]:
    """devhost's CPU per 1,000 recipients (admission included) with the given group commit."""
    to = recipients(count, prefix=f"c{int(group_ms)}x")
    fast_lookalike(lookalike)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        app_against(lookalike, Path(tmp) / "state", SENDMAIL_LEDGER_GROUP_MS=str(group_ms)) as host,
    ):
        lookalike.reset()
        assert host.proc is not None
        cpu_before = cpu_seconds(host.proc.pid)
        started = time.monotonic()
        status = wait_done(host, post_send(host, to), timeout=900)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(host.proc.pid) - cpu_before
    counts = accounting(lookalike, to)
    return {
        "group_ms": group_ms,
        "recipients": count,
        "seconds": round(elapsed, 2),
        "sent": status["progress"]["sent"],
        "cpu_seconds": round(cpu, 2),
        "cpu_per_1000": round(cpu / (count / 1000), 3),
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
    }


def naive_cost(lookalike: LookalikeHandle, count: int) -> dict[str, Any]:
    """The naive loop's CPU per 1,000 recipients against the same look-alike."""
    to = recipients(count, prefix="nc")
    fast_lookalike(lookalike)
    lookalike.reset()
    cpu_before = time.thread_time()
    result = send_all(to, endpoint_url=lookalike.endpoint_url)
    cpu = time.thread_time() - cpu_before
    return {
        "recipients": count,
        "sent": result.sent,
        "cpu_seconds": round(cpu, 2),
        "cpu_per_1000": round(cpu / (result.sent / 1000), 3),
    }


# --- storm -----------------------------------------------------------------------------------


def storm(lookalike: LookalikeHandle, count: int) -> dict[str, Any]:
    to = recipients(count, prefix="s")
    lookalike.configure(
        rate=100, burst_seconds=1, latency_ms=LATENCY_MS, jitter_ms=5, throttle=0.3, errors=0.02
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        app_against(lookalike, Path(tmp) / "state") as host,
    ):
        lookalike.reset()
        started = time.monotonic()
        status = wait_done(host, post_send(host, to), timeout=1800)
        elapsed = time.monotonic() - started
    counts = accounting(lookalike, to)
    timeline = lookalike.timeline(1.0)
    return {
        "recipients": len(to),
        "seconds": round(elapsed, 1),
        "sent": status["progress"]["sent"],
        "failed": status["progress"]["failed"],
        **counts,
        "timeline": [
            [b["t"], b["accepted"], b["throttled"], b["errors"]] for b in timeline["buckets"]
        ],
    }


# --- crash -----------------------------------------------------------------------------------


def crash_trial(
    lookalike: LookalikeHandle, kind: str, count: int, kill_after: int
) -> dict[str, Any]:
    to = recipients(count, prefix="c")
    lookalike.configure(
        rate=300, burst_seconds=1, latency_ms=LATENCY_MS, jitter_ms=5, throttle=0, errors=0
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        app_against(lookalike, Path(tmp) / "state") as host,
    ):
        lookalike.reset()
        location = post_send(host, to)
        while (before := lookalike.stats())["accepted"] < kill_after:
            time.sleep(0.02)
        gauges = host.request("GET", "/_dev/inflight").json()
        gauge = gauges["sesCallsInFlight"]
        unwritten = gauges.get("unwrittenLedgerRecords") or 0
        if kind == "group":  # right after reading how many calls were in flight
            host.kill_group()
        else:
            host.kill()
        restarted = time.monotonic()
        host.start(timeout=120)
        restart_seconds = time.monotonic() - restarted
        status = wait_done(host, location, timeout=600)
    counts = accounting(lookalike, to)
    return {
        "kind": kind,
        "accepted_before_kill": before["accepted"],
        "in_flight_at_kill": gauge,
        "unwritten_at_kill": unwritten,
        "restart_seconds": round(restart_seconds, 1),
        "sent": status["progress"]["sent"],
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
    }


# --- history ---------------------------------------------------------------------------------


def history(lookalike: LookalikeHandle, count: int) -> dict[str, Any]:
    to = recipients(count, prefix="h")
    lookalike.configure(rate=5000, burst_seconds=1, latency_ms=5, jitter_ms=0, throttle=0, errors=0)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        state = Path(tmp) / "state"
        with app_against(lookalike, state) as host:
            lookalike.reset()
            started = time.monotonic()
            status = wait_done(host, post_send(host, to), timeout=3600)
            elapsed = time.monotonic() - started
        with sqlite3.connect(state / "durable.sqlite3") as db:
            instances = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
            events, size = db.execute("SELECT COUNT(*), SUM(LENGTH(event)) FROM history").fetchone()
    return {
        "recipients": count,
        "seconds": round(elapsed, 1),
        "sent": status["progress"]["sent"],
        "instances": instances,
        "history_events": events,
        "events_per_recipient": round(events / count, 4),
        "history_bytes_per_recipient": round(size / count, 1),
        "duplicated": accounting(lookalike, to)["duplicated"],
    }


# --- reporting -------------------------------------------------------------------------------


def charts(results: dict[str, Any]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    if "throughput" in results:
        rows = results["throughput"]
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['engine']['rate']:g}/s" for r in rows]
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["engine"]["ratio"] for r in rows], 0.4, label="Send-Mail")
        ax.bar(
            [x + 0.2 for x in xs],
            [r["naive"]["ratio"] for r in rows],
            0.4,
            label="one-at-a-time boto3 loop",
        )
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="0.9 of MaxSendRate")
        ax.set_xticks(list(xs), labels)
        ax.set_xlabel("account MaxSendRate (50 ms per SendEmail)")
        ax.set_ylabel("recipients/s ÷ MaxSendRate")
        ax.set_ylim(0, 1.1)
        ax.legend(loc="upper right")
        ax.set_title("Throughput: achieved rate as a share of the account's rate")
        fig.tight_layout()
        fig.savefig(OUT_DIR / "throughput.png", dpi=120)
        plt.close(fig)
        made.append("throughput.png")
    if "storm" in results:
        run = results["storm"]
        ts = [b[0] for b in run["timeline"]]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(ts, [b[1] for b in run["timeline"]], label="accepted/s")
        ax.plot(ts, [b[2] for b in run["timeline"]], label="throttled/s (429)")
        ax.plot(ts, [b[3] for b in run["timeline"]], label="5xx/s")
        ax.set_xlabel("seconds")
        ax.set_ylabel("calls per second")
        ax.set_title(
            f"Storm: 30% throttled, 2% 5xx — {run['recipients']} recipients, "
            f"{run['lost']} lost, {run['duplicated']} duplicated"
        )
        ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(OUT_DIR / "storm.png", dpi=120)
        plt.close(fig)
        made.append("storm.png")
    return made


def table(results: dict[str, Any]) -> str:
    lines = []
    if "throughput" in results:
        lines += [
            "| MaxSendRate | recipients | Send-Mail: s, recipients/s, ÷ rate | throttled calls | "
            "lost / dup | naive loop: recipients/s, ÷ rate | Send-Mail ÷ naive |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["throughput"]:
            e, n = row["engine"], row["naive"]
            speedup = e["achieved_per_s"] / n["achieved_per_s"] if n["achieved_per_s"] else 0
            lines.append(
                f"| {e['rate']:g}/s | {e['recipients']} | {e['seconds']} s, "
                f"{e['achieved_per_s']}/s, **{e['ratio']}** | {e['throttled_calls']} "
                f"({100 * e['throttled_fraction']:.1f}%) | {e['lost']} / {e['duplicated']} | "
                f"{n['achieved_per_s']}/s, {n['ratio']} | {speedup:.1f}x |"
            )
        lines.append("")
    if "storm" in results:
        s, n = results["storm"], results.get("storm_naive", {})
        lines += [
            "| storm (30% 429, 2% 5xx, 100/s) | recipients | sent | lost | duplicated | s | "
            "throttled calls | 5xx |",
            "|---|---|---|---|---|---|---|---|",
            f"| Send-Mail | {s['recipients']} | {s['sent']} | {s['lost']} | {s['duplicated']} | "
            f"{s['seconds']} | {s['throttled_calls']} | {s['errors_5xx']} |",
        ]
        if n:
            lines.append(
                f"| naive loop ({n['ended']}) | {n['recipients']} | {n['accepted']} | "
                f"{n['recipients'] - n['accepted'] + n['duplicated']} | {n['duplicated']} | "
                f"{n['seconds']} | {n['throttled_calls']} | {n['errors_5xx']} |"
            )
        lines.append("")
    if "crash" in results:
        lines += [
            "| crash trial | kill | accepted before kill | SendEmail calls in flight at kill | "
            "successes not yet written | restart (s) | lost | duplicated |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n, trial in enumerate(results["crash"], 1):
            lines.append(
                f"| {n} | {trial['kind']} | {trial['accepted_before_kill']} | "
                f"{trial['in_flight_at_kill']} | {trial.get('unwritten_at_kill', '—')} | "
                f"{trial['restart_seconds']} | {trial['lost']} | {trial['duplicated']} |"
            )
        lines.append("")
    if "history" in results:
        h = results["history"]
        lines += [
            "| history | recipients | instances | events | events per recipient | "
            "bytes per recipient | s |",
            "|---|---|---|---|---|---|---|",
            f"| 50,000-recipient send | {h['recipients']} | {h['instances']} | "
            f"{h['history_events']} | {h['events_per_recipient']} | "
            f"{h['history_bytes_per_recipient']} | {h['seconds']} |",
            "",
        ]
    if "cost" in results:
        c = results["cost"]
        naive_cpu = c["naive"]["cpu_per_1000"]
        lines += [
            "| CPU per recipient (3,000/s, 5 ms) | recipients | s | CPU-s per 1,000 | "
            "÷ naive loop | lost / dup |",
            "|---|---|---|---|---|---|",
            f"| naive loop (its thread) | {c['naive']['recipients']} | | {naive_cpu} | 1.0 | |",
        ]
        for label, key in (
            ("Send-Mail, ledger group commit (50 ms)", "grouped"),
            ("Send-Mail, one ledger write per recipient", "per_record"),
        ):
            r = c[key]
            lines.append(
                f"| {label} | {r['recipients']} | {r['seconds']} | {r['cpu_per_1000']} | "
                f"{r['cpu_per_1000'] / naive_cpu:.2f} | {r['lost']} / {r['duplicated']} |"
            )
        lines.append("")
    return "\n".join(lines)


def publish(results: dict[str, Any]) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    path = OUT_DIR / "sending.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
    merged = {**previous, **results}
    path.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
    charts(merged)
    write_between_markers("sending", table(merged))


def write_between_markers(name: str, text: str) -> None:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in the doc."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = DOC.read_text(encoding="utf-8")
    if begin in doc and end in doc:
        head, _, rest = doc.partition(begin)
        _, _, tail = rest.partition(end)
        DOC.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sending", description=__doc__)
    parser.add_argument("--only", default="throughput,storm,crash,history,cost")
    parser.add_argument("--quick", action="store_true", help="smaller sends (a smoke run)")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    factor = 5 if args.quick else 30
    results: dict[str, Any] = {}
    with start_lookalike(
        rate=100, latency_ms=LATENCY_MS, verified=[SENDER], daily_quota=10_000_000, seed=11
    ) as lookalike:
        if "throughput" in wanted:
            results["throughput"] = []
            for rate in (14, 100, 300):
                engine = throughput(lookalike, rate, factor)
                print(json.dumps({k: v for k, v in engine.items() if k != "timeline"}), flush=True)
                base = naive(lookalike, rate, engine["recipients"])
                print(json.dumps(base), flush=True)
                results["throughput"].append({"engine": engine, "naive": base})
        if "storm" in wanted:
            results["storm"] = storm(lookalike, 400 if args.quick else 2000)
            print(json.dumps({k: v for k, v in results["storm"].items() if k != "timeline"}))
            results["storm_naive"] = naive(lookalike, 100, NAIVE_SAMPLE, throttle=0.3, errors=0.02)
            print(json.dumps(results["storm_naive"]), flush=True)
        if "crash" in wanted:
            count = 1500 if args.quick else 6000
            results["crash"] = []
            for kind in ("host", "group"):
                for trial in range(args.trials):
                    kill_after = count // 4 + trial * count // 8
                    outcome = crash_trial(lookalike, kind, count, kill_after)
                    print(json.dumps(outcome), flush=True)
                    results["crash"].append(outcome)
        if "history" in wanted:
            results["history"] = history(lookalike, 5000 if args.quick else 50_000)
            print(json.dumps(results["history"]), flush=True)
        if "cost" in wanted:
            count = 2000 if args.quick else 10_000
            results["cost"] = {
                "naive": naive_cost(lookalike, min(count, 2000)),
                "grouped": cost(lookalike, count, 50),
                "per_record": cost(lookalike, count, 0),
            }
            print(json.dumps(results["cost"]), flush=True)
    publish(results)


if __name__ == "__main__":
    main()
