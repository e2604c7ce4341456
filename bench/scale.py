"""One send at 10,000, 100,000 (and, once, 1,000,000) recipients: what a recipient costs.

Each size runs the real app under devhost (Azurite for the ledger, the lists and the sends
table; real orchestrations) against :mod:`bench.ses_lookalike` set fast enough that the app is
the bottleneck (3,000/s, 5 ms: :func:`bench.sending.fast_lookalike`), and reports:

- devhost's CPU-seconds per 1,000 recipients, admission included (``/proc/{pid}/stat``);
- devhost's peak resident memory (``VmHWM``);
- Durable history bytes per recipient: what was ever written (``GET /_dev/stats``, older
  ``continue_as_new`` generations included) and what is left at the end (the store);
- the largest status-route answer seen while polling, and the last one;
- lost and duplicated, from the look-alike's own ledger.

The **baseline** is the design before the list left the history (commit :data:`BASELINE_REF`),
run from a ``git worktree`` of it at 10,000 and 50,000 (its cap) in the same run. The naive
one-client boto3 loop's CPU per 1,000 (:func:`bench.sending.naive_cost`) is measured in the same
run too: the issue's bar is 1.6 times that.

``python -m bench.scale [--sizes 10000,100000] [--no-baseline]`` writes
``docs/benchmarks/scale.json``, the charts ``docs/benchmarks/scale-*.png`` (log x axis) and the
table between the ``scale`` markers in ``docs/benchmarks.md``. A size already in ``scale.json``
and not run again is kept (the 1,000,000 run is made once, by hand: ``--sizes 1000000
--no-baseline``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.sending import (
    OUT_DIR,
    SENDER,
    accounting,
    cpu_seconds,
    fast_lookalike,
    naive_cost,
    recipients,
    write_between_markers,
)
from bench.ses_lookalike import LookalikeHandle, start_lookalike
from devhost.process import REPO_ROOT, DevhostProcess

#: The last commit whose sends carried their recipients and results in the Durable history.
BASELINE_REF = "c217982"
BASELINE_SIZES = (10_000, 50_000)
SIZES = (10_000, 100_000)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@contextlib.contextmanager
def baseline_checkout() -> Iterator[Path]:
    """A detached worktree of :data:`BASELINE_REF`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        path = Path(tmp) / "baseline"
        subprocess.run(  # noqa: S603 (our own argv)
            ["git", "worktree", "add", "--detach", str(path), BASELINE_REF],  # noqa: S607
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        # its devhost starts Azurite from node_modules: this checkout's (the same package)
        (path / "node_modules").symlink_to(REPO_ROOT / "node_modules")
        try:
            yield path
        finally:
            subprocess.run(  # noqa: S603
                ["git", "worktree", "remove", "--force", str(path)],  # noqa: S607
                cwd=REPO_ROOT,
                check=False,
                capture_output=True,
            )


def one_send(lookalike: LookalikeHandle, count: int, root: Path | None = None) -> dict[str, Any]:
    """One send of ``count`` through devhost (``root``'s: this checkout's by default)."""
    to = recipients(count, prefix=f"s{count}x")
    fast_lookalike(lookalike)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        state = Path(tmp) / "state"
        env = {
            "AWS_ENDPOINT_URL": lookalike.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "ap-northeast-2",
            "SENDMAIL_SES_MAX_RECIPIENTS": str(max(count, 50_000)),
            # The deadline follows MaxSendRate (3,000/s here), which one devhost process on two
            # cores cannot reach: widened so that CPU, not the deadline, decides how long it takes.
            "SENDMAIL_SES_SEND_DEADLINE_SECONDS": "14400",
            "DEVHOST_LOG_LEVEL": "WARNING",
        }
        app_dir = root if root is not None else REPO_ROOT
        host = DevhostProcess(app_dir, state, env=env, emulators=True, root=root)
        host.start(timeout=120)
        try:
            lookalike.reset()
            assert host.proc is not None
            pid = host.proc.pid
            cpu_before = cpu_seconds(pid)
            started = time.monotonic()
            body = {
                "senderEmail": SENDER,
                "recipientEmails": to,
                "subject": "벤치마크",
                "body": "본문",
            }
            answer = host.request("POST", "/api/v1/emails/aws-send", json=body, timeout=1200)
            if answer.status_code != 202:
                raise RuntimeError(f"send refused: {answer.status_code} {answer.text[:300]}")
            admitted = time.monotonic() - started
            location = answer.headers["Location"]
            largest = last = 0  # while running; the finished answer
            status: dict[str, Any] = {}
            deadline = time.monotonic() + 4 * 3600
            while time.monotonic() < deadline:
                response = host.session.get(
                    location, headers={"x-functions-key": host.key}, timeout=120
                )
                if response.status_code == 200:
                    last = len(response.content)
                    status = response.json()
                    break
                largest = max(largest, len(response.content))
                time.sleep(1.0)
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(pid) - cpu_before
            rss = peak_rss_mb(pid)
            stats = host.request("GET", "/_dev/stats")
            written = stats.json() if stats.status_code == 200 else None
        finally:
            host.stop()
            host.session.close()
        with sqlite3.connect(state / "durable.sqlite3") as db:
            instances = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
            events, size = db.execute("SELECT COUNT(*), SUM(LENGTH(event)) FROM history").fetchone()
    counts = accounting(lookalike, to)
    written_bytes = written["historyBytesWritten"] if written else size
    return {
        "recipients": count,
        "design": "baseline" if root is not None else "current",
        "seconds": round(elapsed, 1),
        "admission_seconds": round(admitted, 1),
        "sent": status.get("progress", {}).get("sent"),
        "cpu_seconds": round(cpu, 1),
        "cpu_per_1000": round(cpu / (count / 1000), 3),
        "peak_rss_mb": rss,
        "instances": instances,
        "history_events_left": events,
        "history_bytes_left_per_recipient": round(size / count, 2),
        "history_bytes_written_per_recipient": round(written_bytes / count, 2),
        "status_bytes_running": largest,
        "status_bytes_finished": last,
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
    }


def charts(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    naive = results.get("naive", {}).get("cpu_per_1000")
    for key, label, name in (
        ("cpu_per_1000", "devhost CPU-seconds per 1,000 recipients", "scale-cpu.png"),
        (
            "history_bytes_written_per_recipient",
            "Durable history bytes written per recipient",
            "scale-history.png",
        ),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for design, style in (("current", "o-"), ("baseline", "s--")):
            points = sorted((r["recipients"], r[key]) for r in runs if r["design"] == design)
            if points:
                xs, ys = zip(*points, strict=True)
                title = "this design" if design == "current" else f"before ({BASELINE_REF})"
                ax.plot(xs, ys, style, label=title)
        if key == "cpu_per_1000" and naive:  # the latest run's
            ax.axhline(naive, color="grey", linestyle=":", label="naive boto3 loop")
            ax.axhline(1.6 * naive, color="red", linestyle=":", label="1.6 x naive (the bar)")
        if key != "cpu_per_1000":
            ax.axhline(20, color="red", linestyle=":", label="20 bytes (the bar)")
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("recipients in one send")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0 if key == "cpu_per_1000" else None)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT_DIR / name, dpi=110)
        plt.close(fig)


def table(results: dict[str, Any]) -> str:
    naive = results.get("naive", {}).get("cpu_per_1000")
    lines = [
        "| design | recipients | s (admission) | CPU-s per 1,000 | ÷ naive (its CPU-s) | "
        "peak RSS MB | history B/recipient written (left) | status answer B running / finished "
        "| lost / dup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["runs"], key=lambda r: (r["design"] != "baseline", r["recipients"])):
        own = r.get("naive_cpu_per_1000") or naive  # the naive loop of the same invocation
        ratio = f"{r['cpu_per_1000'] / own:.2f} ({own})" if own else "—"
        design = "this design" if r["design"] == "current" else f"before ({BASELINE_REF})"
        lines.append(
            f"| {design} | {r['recipients']:,} | {r['seconds']} ({r['admission_seconds']}) | "
            f"{r['cpu_per_1000']} | {ratio} | {r['peak_rss_mb']} | "
            f"{r['history_bytes_written_per_recipient']} "
            f"({r['history_bytes_left_per_recipient']}) | "
            f"{r['status_bytes_running']:,} / {r['status_bytes_finished']:,} | "
            f"{r['lost']} / {r['duplicated']} |"
        )
    return "\n".join(lines)


def publish(results: dict[str, Any]) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "scale.json"
    previous: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    fresh = {(r["design"], r["recipients"]) for r in results["runs"]}
    kept = [r for r in previous.get("runs", []) if (r["design"], r["recipients"]) not in fresh]
    merged = {**previous, **results, "runs": kept + results["runs"]}
    if "naive" not in results and "naive" in previous:
        merged["naive"] = previous["naive"]
    path.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
    charts(merged)
    write_between_markers("scale", table(merged))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict[str, Any] = {"runs": []}
    with start_lookalike(
        rate=3000, latency_ms=5, verified=[SENDER], daily_quota=10_000_000, seed=7
    ) as lookalike:
        results["naive"] = naive_cost(lookalike, 2000)
        naive = results["naive"]["cpu_per_1000"]
        print(json.dumps(results["naive"]), flush=True)
        for size in sizes:
            run = {**one_send(lookalike, size), "naive_cpu_per_1000": naive}
            print(json.dumps(run), flush=True)
            results["runs"].append(run)
        if not args.no_baseline:
            with baseline_checkout() as root:
                for size in BASELINE_SIZES:
                    run = {**one_send(lookalike, size, root=root), "naive_cpu_per_1000": naive}
                    print(json.dumps(run), flush=True)
                    results["runs"].append(run)
    publish(results)


if __name__ == "__main__":
    main()
