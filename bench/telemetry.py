"""The telemetry's CPU per recipient: one send with it off, with devhost's SDK, with Azure's.

Each trial runs the real app under devhost (Azurite, real orchestrations and lanes) against
:mod:`bench.ses_lookalike` set fast enough that the app is the bottleneck (3,000/s, 5 ms:
:func:`bench.sending.fast_lookalike`), in one of three modes:

- **off**: ``DEVHOST_TELEMETRY=0``, no connection string: the OpenTelemetry API's no-op
  instruments (:mod:`sendmail.platform.telemetry`, "Without either") — the baseline;
- **devhost**: devhost's in-memory SDK (:mod:`devhost.metrics`, ``/_dev/metrics``);
- **azure**: ``DEVHOST_TELEMETRY=0`` and ``APPLICATIONINSIGHTS_CONNECTION_STRING`` naming an
  ingestion endpoint on loopback (:class:`IngestionSink`, in this process, answering every
  ``POST /v2.1/track`` as Application Insights does): the app configures the real Azure Monitor
  distro at its first record, as in Azure, and its exporters serialise and post for real. The
  metrics export every :data:`EXPORT_INTERVAL_MS` (``OTEL_METRIC_EXPORT_INTERVAL``; 60 s by
  default, shortened so that a send exports several times: a heavier load than Azure's).
  Statsbeat and the control plane's settings poll are off (they would call Microsoft's
  endpoints from this machine; both run every 15 minutes or more, nothing per recipient).

A trial: devhost started in the mode; a warm-up send of :data:`WARMUP` recipients (first imports,
and in the azure mode the distro's configuration on its thread: costs per process, not per
recipient; in the azure mode the trial waits for the sink's first request, the proof that the
distro is configured); :data:`IDLE_SECONDS` idle (devhost's CPU per second with nothing to send);
then the measured send — devhost's CPU-seconds (``/proc/{pid}/stat``, every thread of the
process, not the sink's or the look-alike's) from before the ``POST`` to the status route's 200
(admission included), divided by its recipients; and, apart, the CPU of the threads only the
telemetry runs (:data:`TELEMETRY_THREADS`, found by ``py-spy dump``). Checks: every recipient
accepted once by the look-alike; devhost's ``/_dev/metrics`` counting every recipient sent
(devhost) or disabled (off); the sink receiving metric points that add up to the send's
recipients (azure) — else the trial fails loudly, since it measured nothing.

:data:`TRIALS` rounds of one trial per mode, each on a fresh devhost, the modes' order rotating
(off, devhost, azure; devhost, azure, off; …) so that none is always first. Reported per mode: the
median µs of CPU per recipient, its ratio to "off", the spread, and for azure the export requests
and items the sink saw. The whole send's CPU varies by several percent between identical trials
on a shared machine, more than the telemetry can cost; so one more send per telemetry mode runs
under ``py-spy record --gil`` (:func:`bench.profile.spying`), and the share of samples with a
telemetry frame on the stack — inline on the send's threads, or on the SDK's own — is the
telemetry's part, given as µs per recipient of that mode's median (``--no-profile``: skipped).

``python -m bench.telemetry [--recipients N] [--trials N] [--quick] [--no-profile]`` (in ``make
bench``) writes ``docs/benchmarks/telemetry.json``, the chart ``docs/benchmarks/telemetry.png``
and the table between ``<!-- telemetry:begin -->`` and ``<!-- telemetry:end -->`` in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.profile import PY_SPY, spying, stacks
from bench.sending import (
    COST_LATENCY_MS,
    COST_RATE,
    OUT_DIR,
    SENDER,
    accounting,
    app_against,
    cpu_seconds,
    fast_lookalike,
    post_send,
    recipients,
    wait_done,
    write_between_markers,
)
from bench.ses_lookalike import LookalikeHandle, start_lookalike
from devhost.process import DevhostProcess

MODES = ("off", "devhost", "azure")
RECIPIENTS = 20_000
QUICK_RECIPIENTS = 2_000
TRIALS = 3
WARMUP = 200
IDLE_SECONDS = 5.0
#: The metric reader's export interval in the azure mode (the distro's default is 60,000).
EXPORT_INTERVAL_MS = 5000
#: How long the sink may take to see a send's metrics after it finished.
ARRIVAL_TIMEOUT = 3 * EXPORT_INTERVAL_MS / 1000 + 15
SENT = "sendmail.recipients.sent"
#: Names of the threads only the telemetry runs (OpenTelemetry's SDK, the exporter's storage).
TELEMETRY_THREADS = ("Otel", "AzureMonitor", "sendmail-telemetry")


class IngestionSink:
    """Application Insights' ingestion endpoint on loopback: answers each ``POST …/track`` with
    200 and every item accepted, and counts requests, items by envelope type, and the sum of
    each metric's points (the exporter sends counters as deltas, so the sums are the totals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.items: collections.Counter[str] = collections.Counter()
        self.sums: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                count = sink.record(self.path, body)
                answer = json.dumps(
                    {"itemsReceived": count, "itemsAccepted": count, "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def connection_string(self) -> str:
        port = self.server.server_address[1]
        return (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{port}/"
        )

    def record(self, path: str, body: bytes) -> int:
        try:
            envelopes = json.loads(body) if body else []
        except ValueError:
            envelopes = []
        if not isinstance(envelopes, list):
            envelopes = [envelopes]
        with self._lock:
            self.requests[path] += 1
            self.bytes += len(body)
            for envelope in envelopes:
                data = envelope.get("data") or {}
                self.items[str(data.get("baseType") or envelope.get("name"))] += 1
                for metric in (data.get("baseData") or {}).get("metrics") or []:
                    self.sums[str(metric.get("name"))] += float(metric.get("value") or 0)
        return len(envelopes)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "items": dict(self.items),
                "bytes": self.bytes,
                "sums": dict(self.sums),
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.items.clear()
            self.sums.clear()
            self.bytes = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def mode_env(mode: str, sink: IngestionSink) -> dict[str, str]:
    """devhost's environment for ``mode`` (an empty connection string: none, whatever the
    caller's environment holds)."""
    if mode == "off":
        return {"DEVHOST_TELEMETRY": "0", "APPLICATIONINSIGHTS_CONNECTION_STRING": ""}
    if mode == "devhost":
        return {"DEVHOST_TELEMETRY": "1", "APPLICATIONINSIGHTS_CONNECTION_STRING": ""}
    return {
        "DEVHOST_TELEMETRY": "0",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": sink.connection_string,
        "OTEL_METRIC_EXPORT_INTERVAL": str(EXPORT_INTERVAL_MS),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    }


def eventually(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"telemetry bench: {what} not seen after {timeout:.0f} s")
        time.sleep(0.25)


def dev_sent(host: DevhostProcess) -> float | None:
    """``sendmail.recipients.sent`` as devhost's ``/_dev/metrics`` has it (None: disabled)."""
    body = host.request("GET", "/_dev/metrics").json()
    if not body.get("enabled"):
        return None
    points = body["metrics"].get(SENT, {}).get("points", [])
    return float(sum(p["value"] for p in points))


@contextlib.contextmanager
def warmed_up(
    lookalike: LookalikeHandle, sink: IngestionSink, mode: str, tag: str
) -> Iterator[tuple[DevhostProcess, float]]:
    """devhost in ``mode`` after its warm-up send (in the azure mode: until the distro, configured
    on its thread, has exported), and the warm-up's CPU-seconds."""
    fast_lookalike(lookalike)
    sink.reset()
    with (
        tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp,
        app_against(lookalike, Path(tmp) / "state", **mode_env(mode, sink)) as host,
    ):
        assert host.proc is not None
        before = cpu_seconds(host.proc.pid)
        wait_done(host, post_send(host, recipients(WARMUP, prefix=f"w{tag}x")), 300)
        if mode == "azure":
            eventually("an export after the warm-up", lambda: sum(sink.requests.values()) > 0, 60)
        yield host, cpu_seconds(host.proc.pid) - before


def telemetry_threads(pid: int) -> dict[int, str]:
    """The threads of ``pid`` that only the telemetry runs (the SDK's readers and processors,
    the exporters' storage tasks), by native id, named as ``py-spy dump`` shows them; empty when
    py-spy cannot read the process."""
    try:
        dump = subprocess.run(  # noqa: S603 (our own py-spy, our own process)
            [str(PY_SPY), "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {}
    for match in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump, re.MULTILINE):
        if match[2].startswith(TELEMETRY_THREADS):
            found[int(match[1])] = match[2]
    return found


def threads_cpu(pid: int, tids: Iterable[int]) -> float:
    """CPU-seconds of these threads of ``pid`` (a thread that ended counts nothing)."""
    total = 0.0
    for tid in tids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid, tid)
    return total


def trial(
    lookalike: LookalikeHandle, sink: IngestionSink, mode: str, count: int, number: int
) -> dict[str, Any]:
    to = recipients(count, prefix=f"t{mode[0]}{number}x")
    with warmed_up(lookalike, sink, mode, f"{mode[0]}{number}") as (host, warmup_cpu):
        assert host.proc is not None
        pid = host.proc.pid
        idle_before = cpu_seconds(pid)
        time.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(pid) - idle_before) / IDLE_SECONDS
        tids = telemetry_threads(pid) if mode != "off" else {}
        at_start = sink.snapshot()
        lookalike.reset()
        threads_before, cpu_before = threads_cpu(pid, tids), cpu_seconds(pid)
        started = time.monotonic()
        status = wait_done(host, post_send(host, to), timeout=1800)
        elapsed = time.monotonic() - started
        cpu, threads = cpu_seconds(pid) - cpu_before, threads_cpu(pid, tids) - threads_before
        at_end = sink.snapshot()
        seen = dev_sent(host)
        if mode == "azure":
            eventually(
                f"the send's {count} recipients in the exported metrics",
                lambda: sink.sums[SENT] - at_start["sums"].get(SENT, 0) >= count,
                ARRIVAL_TIMEOUT,
            )
    counts = accounting(lookalike, to)
    arrived = sink.snapshot()
    exported = arrived["sums"].get(SENT, 0) - at_start["sums"].get(SENT, 0)
    ok = (
        status["progress"]["sent"] == count
        and counts["lost"] == 0
        and counts["duplicated"] == 0
        and (seen is None if mode != "devhost" else seen == WARMUP + count)
        and (exported == count if mode == "azure" else not arrived["requests"])
    )
    if not ok:
        raise RuntimeError(
            f"telemetry bench: {mode} trial {number} is not what it should be: "
            f"progress {status['progress']}, {counts}, /_dev/metrics sent {seen}, "
            f"sink {arrived['requests']}, {exported} sent exported"
        )
    during = sum(at_end["requests"].values()) - sum(at_start["requests"].values())
    return {
        "mode": mode,
        "trial": number,
        "recipients": count,
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_recipient": round(1e6 * cpu / count, 1),
        "telemetry_threads": sorted(set(tids.values())),
        "telemetry_threads_cpu_seconds": round(threads, 4),
        "telemetry_threads_us_per_recipient": round(1e6 * threads / count, 2),
        "idle_cpu_per_s": round(idle, 4),
        "warmup_cpu_seconds": round(warmup_cpu, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "export_requests_during_send": during,
        "export_requests": sum(arrived["requests"].values()),
        "export_paths": arrived["requests"],
        "export_items": arrived["items"],
        "export_bytes": arrived["bytes"],
        "exported_sent": exported,
        "warmup_exported_sent": at_start["sums"].get(SENT, 0),
        "dev_metrics_sent": seen,
    }


#: Frames of the telemetry: the OpenTelemetry SDK, the distro and its exporter, the app's module.
TELEMETRY_FRAMES = ("opentelemetry/", "azure/monitor/", "sendmail/platform/telemetry.py")
#: Frames of the code a send runs (a telemetry frame under one of these is a call made inline).
APP_FRAMES = ("activities/", "api/", "orchestrators/", "sendmail/", "devhost/")


def where(stack: str) -> str:
    """``inline`` (a telemetry call on a thread of the send), ``export`` (the SDK's own threads)
    or ``other``, by the frames of one sampled stack (outermost first)."""
    frames = stack.split(";")
    for depth, frame in enumerate(frames):
        if any(part in frame for part in TELEMETRY_FRAMES):
            outer = frames[:depth]
            return "inline" if any(p in f for f in outer for p in APP_FRAMES) else "export"
    return "other"


def profile(
    lookalike: LookalikeHandle, sink: IngestionSink, mode: str, count: int
) -> dict[str, Any]:
    """One send of ``count`` in ``mode`` under ``py-spy record --gil``: the share of the samples
    with a telemetry frame on the stack, inline and on the SDK's threads, and the functions most
    often on top of those."""
    to = recipients(count, prefix=f"p{mode[0]}x")
    with (
        tempfile.TemporaryDirectory(prefix="bench-telemetry-spy-") as tmp,
        warmed_up(lookalike, sink, mode, f"p{mode[0]}") as (host, _),
    ):
        assert host.proc is not None
        raw = Path(tmp) / "stacks.txt"
        with spying(host.proc.pid, raw, rate=100):
            wait_done(host, post_send(host, to), timeout=1800)
        sampled = list(stacks(raw))
    total = sum(n for _, n in sampled)
    by_where: collections.Counter[str] = collections.Counter()
    top: collections.Counter[str] = collections.Counter()
    for stack, n in sampled:
        kind = where(stack)
        by_where[kind] += n
        if kind != "other":
            top[stack.split(";")[-1]] += n
    return {
        "mode": mode,
        "recipients": count,
        "samples": total,
        "telemetry_percent": round(100 * (by_where["inline"] + by_where["export"]) / total, 2),
        "inline_percent": round(100 * by_where["inline"] / total, 2),
        "export_percent": round(100 * by_where["export"] / total, 2),
        "top_telemetry_functions_percent": {
            name: round(100 * n / total, 2) for name, n in top.most_common(10)
        },
    }


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    medians = {
        mode: statistics.median(t["cpu_us_per_recipient"] for t in trials if t["mode"] == mode)
        for mode in MODES
    }
    rows = []
    for mode in MODES:
        chosen = [t for t in trials if t["mode"] == mode]
        per = [t["cpu_us_per_recipient"] for t in chosen]

        def median(key: str, chosen: list[dict[str, Any]] = chosen) -> float:
            return float(statistics.median(t[key] for t in chosen))

        rows.append(
            {
                "mode": mode,
                "trials": len(chosen),
                "cpu_us_per_recipient": round(medians[mode], 1),
                "min": min(per),
                "max": max(per),
                "ratio_to_off": round(medians[mode] / medians["off"], 3),
                "telemetry_threads_us_per_recipient": median("telemetry_threads_us_per_recipient"),
                "seconds": median("seconds"),
                "idle_cpu_per_s": median("idle_cpu_per_s"),
                "warmup_cpu_seconds": median("warmup_cpu_seconds"),
                "export_requests_during_send": median("export_requests_during_send"),
                "export_requests": median("export_requests"),
            }
        )
    return rows


LABELS = {
    "off": "off (no-op API)",
    "devhost": "devhost's in-memory SDK",
    "azure": "Azure Monitor distro, loopback ingestion",
}


def attributed(results: dict[str, Any], mode: str) -> dict[str, float] | None:
    """The profile's telemetry shares as CPU µs per recipient of the mode's median send."""
    found = next((p for p in results.get("profiles", []) if p["mode"] == mode), None)
    if found is None:
        return None
    row = next(r for r in results["summary"] if r["mode"] == mode)
    return {
        part: round(row["cpu_us_per_recipient"] * found[f"{part}_percent"] / 100, 1)
        for part in ("telemetry", "inline", "export")
    }


def table(results: dict[str, Any]) -> str:
    count = results["recipients"]
    lines = [
        f"| telemetry, one send of {count:,} | trials | devhost CPU µs per recipient: median "
        "(min, max) | ÷ off | telemetry threads' CPU µs per recipient | send s | "
        "export requests during the send (all) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["summary"]:
        exports = "—"
        if r["mode"] == "azure":
            exports = f"{r['export_requests_during_send']:g} ({r['export_requests']:g})"
        threads = "—" if r["mode"] == "off" else f"{r['telemetry_threads_us_per_recipient']:.2f}"
        lines.append(
            f"| {LABELS[r['mode']]} | {r['trials']} | **{r['cpu_us_per_recipient']:.0f}** "
            f"({r['min']:.0f}, {r['max']:.0f}) | **{r['ratio_to_off']:.3f}** | {threads} | "
            f"{r['seconds']} | {exports} |"
        )
    if results.get("profiles"):
        lines += [
            "",
            "| py-spy --gil, one send per mode | GIL samples | telemetry on the stack: all "
            "(inline, SDK threads) | as CPU µs per recipient | its most sampled function |",
            "|---|---:|---:|---:|---|",
        ]
        for p in results["profiles"]:
            share = attributed(results, p["mode"]) or {}
            top = next(iter(p["top_telemetry_functions_percent"]), "—")
            lines.append(
                f"| {LABELS[p['mode']]} | {p['samples']:,} | **{p['telemetry_percent']:.2f}%** "
                f"({p['inline_percent']:.2f}%, {p['export_percent']:.2f}%) | "
                f"{share.get('telemetry', 0):.1f} | `{top}` |"
            )
    azure = [t for t in results["trials"] if t["mode"] == "azure"]
    items: collections.Counter[str] = collections.Counter()
    for t in azure:
        items.update(t["export_items"])
    idle = max(r["idle_cpu_per_s"] for r in results["summary"])
    lines += [
        "",
        f"SES look-alike at {COST_RATE:,}/s, {COST_LATENCY_MS} ms per call (the app is the "
        f"bottleneck); a fresh devhost per trial, the modes' order rotating, a {WARMUP}-recipient "
        f"warm-up send and {IDLE_SECONDS:g} s idle (devhost's idle CPU: at most {idle:.3f} s/s, "
        "not subtracted) before each measured send. Azure mode: metrics exported every "
        f"{EXPORT_INTERVAL_MS / 1000:g} s; the sink received "
        + ", ".join(f"{n:,} {kind}" for kind, n in items.most_common())
        + f" items over {len(azure)} trials, each send's `{SENT}` adding up to its recipients. "
        f"Load average (1 min) at the end: {results['load_average_1m']}.",
    ]
    return "\n".join(lines)


def chart(results: dict[str, Any]) -> None:
    """docs/benchmarks/telemetry.png: devhost's CPU µs per recipient by mode (bar: median; dots:
    trials; label: the ratio to "off"), and the telemetry's own part of it, from the profile."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    summary, trials = results["summary"], results["trials"]
    names = [LABELS[r["mode"]].replace(", ", ",\n").replace(" (", "\n(") for r in summary]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), width_ratios=(1.3, 1))
    xs = list(range(len(summary)))
    bars = left.bar(xs, [r["cpu_us_per_recipient"] for r in summary], 0.6, color=["C7", "C0", "C1"])
    for x, r in zip(xs, summary, strict=True):
        per = [t["cpu_us_per_recipient"] for t in trials if t["mode"] == r["mode"]]
        spread = [x + (i - (len(per) - 1) / 2) * 0.08 for i in range(len(per))]
        left.scatter(spread, per, s=14, color="black", zorder=3)
    left.bar_label(
        bars,
        [f"{r['cpu_us_per_recipient']:.0f} µs, {r['ratio_to_off']:.3f} of off" for r in summary],
        padding=3,
        fontsize=8,
    )
    left.set_xticks(xs, names, fontsize=8)
    left.set_ylabel("devhost CPU µs per recipient")
    left.set_ylim(0, max(t["cpu_us_per_recipient"] for t in trials) * 1.2)
    left.set_title(
        f"One send of {results['recipients']:,} (bar: median; dots: trials)", fontsize=10
    )
    parts = {r["mode"]: attributed(results, r["mode"]) for r in summary}
    shown = [(mode, part) for mode, part in parts.items() if part is not None]
    inline = [part["inline"] for _, part in shown]
    export = [part["export"] for _, part in shown]
    at = list(range(len(shown)))
    right.bar(at, inline, 0.5, label="inline (the send's threads)", color="C2")
    right.bar(at, export, 0.5, bottom=inline, label="the SDK's threads (export)", color="C1")
    shares = {p["mode"]: p["telemetry_percent"] for p in results["profiles"]}
    for x, a, b, (mode, _) in zip(at, inline, export, shown, strict=True):
        label = f"{a + b:.1f} µs ({shares[mode]:.2f}% of the send)"
        right.annotate(label, (x, a + b), ha="center", va="bottom", fontsize=8)
    right.set_xticks(at, [LABELS[mode].replace(", ", ",\n") for mode, _ in shown], fontsize=8)
    right.set_ylabel("telemetry's CPU µs per recipient (py-spy share)")
    right.set_ylim(0, max([a + b for a, b in zip(inline, export, strict=True)] + [1]) * 1.3)
    right.set_title("The telemetry's own part (py-spy --gil)", fontsize=10)
    right.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "telemetry.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__)
    parser.add_argument("--recipients", type=int, default=RECIPIENTS)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_RECIPIENTS:,} recipients, one trial per mode"
    )
    parser.add_argument("--no-profile", action="store_true", help="no py-spy run per mode")
    args = parser.parse_args()
    count = QUICK_RECIPIENTS if args.quick else args.recipients
    rounds = 1 if args.quick else args.trials
    runs: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    sink = IngestionSink()
    try:
        with start_lookalike(
            rate=COST_RATE, latency_ms=COST_LATENCY_MS, verified=[SENDER], daily_quota=-1, seed=21
        ) as lookalike:
            for number in range(rounds):  # each mode first, second and third in turn
                for mode in MODES[number % 3 :] + MODES[: number % 3]:
                    outcome = trial(lookalike, sink, mode, count, number)
                    print(json.dumps(outcome), flush=True)
                    runs.append(outcome)
            for mode in () if args.no_profile else ("devhost", "azure"):
                try:
                    profiles.append(profile(lookalike, sink, mode, count))
                except (OSError, RuntimeError) as exc:  # py-spy needs ptrace
                    print(f"profile skipped: {exc}", flush=True)
                    break
                print(json.dumps(profiles[-1]), flush=True)
    finally:
        sink.close()
    results = {
        "recipients": count,
        "warmup_recipients": WARMUP,
        "export_interval_ms": EXPORT_INTERVAL_MS,
        "lookalike_rate": COST_RATE,
        "lookalike_latency_ms": COST_LATENCY_MS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "summary": summarise(runs),
        "profiles": profiles,
        "trials": runs,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "telemetry.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    chart(results)
    write_between_markers("telemetry", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
