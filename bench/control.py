"""Pause and cancel through devhost: how soon after the answer the last ``SendEmail`` starts.

The promise (sendmail/sending/control.py): no new ``SendEmail`` starts more than 2 seconds after
the pause or cancel answer. Each trial runs the real app under devhost (Azurite, real
orchestrations and lanes) against :mod:`bench.ses_lookalike` at the account's rate, 50 ms per
call:

1. an aws-send of :data:`SECONDS` seconds' worth of recipients at the rate;
2. once the look-alike has accepted :data:`STEADY_SECONDS` seconds' worth (sending steadily),
   after a further random wait of up to one watch interval (so the answer falls anywhere in the
   batches' read cycle), ``POST /pause`` or ``/cancel`` and note when the answer arrived;
3. :data:`SETTLE_SECONDS` later (a cancel: once it has ended), the look-alike's
   ``last_call_monotonic`` — when the latest ``SendEmail`` call arrived, whatever its outcome, on
   the machine's monotonic clock — minus the answer's time is the **stop time** (negative when
   nothing arrived after the answer);
4. checks: a paused send shows ``paused`` and, resumed, completes with ``sent == total`` and every
   recipient accepted exactly once by the look-alike; a canceled send ends ``canceled`` with
   ``sent + failed + canceled == total`` and ``sent`` equal to the number of its recipients the
   look-alike accepted (none twice).

:data:`TRIALS` trials per (action, rate) at 100/s and 300/s, alternating pause and cancel, one
devhost per rate. Reported: median and max stop time next to two references — the promise (2 s)
and the watch interval alone (:data:`~sendmail.sending.control.WATCH_INTERVAL`, 0.5 s: the
longest a batch can go without reading the record, were the read itself free) — as ratios.

``python -m bench.control [--trials N] [--rates 100,300] [--quick]`` (in ``make bench``) writes
``docs/benchmarks/control.json``, the chart ``docs/benchmarks/control.png`` and the table between
``<!-- control:begin -->`` and ``<!-- control:end -->`` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sending import (
    LATENCY_MS,
    OUT_DIR,
    SENDER,
    app_against,
    post_send,
    recipients,
    wait_done,
    write_between_markers,
)
from bench.ses_lookalike import LookalikeHandle, start_lookalike
from devhost.process import DevhostProcess
from sendmail.sending.control import WATCH_INTERVAL

#: The promise: nothing new starts later than this after the answer (seconds).
PROMISE_SECONDS = 2.0
#: How often a batch in progress reads its send's record again (seconds).
WATCH_SECONDS = WATCH_INTERVAL
RATES = (100.0, 300.0)
ACTIONS = ("pause", "cancel")
TRIALS = 10
#: A send this many seconds long at the rate: still sending well after the action.
SECONDS = 30
#: The action comes once the look-alike has accepted this many seconds' worth.
STEADY_SECONDS = 3
#: After a pause's answer, how long to watch for late calls before reading the last one.
SETTLE_SECONDS = 4.0
#: Seconds of the look-alike's timeline kept either side of the answer (for the chart).
WINDOW_SECONDS = 3.0
#: The chart's buckets (0.1 s ones alias with the pacing's ticks).
BUCKET_SECONDS = 0.2


def wait_accepted(lookalike: LookalikeHandle, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while lookalike.stats()["accepted"] < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the send never reached {at_least} accepted")
        time.sleep(0.02)


def act(host: DevhostProcess, send_id: str, action: str) -> tuple[float, float]:
    """POST the action: (when it was asked, when its 200 answer arrived), monotonic."""
    asked = time.monotonic()
    response = host.request("POST", f"/api/v1/emails/{send_id}/{action}", timeout=30)
    answered = time.monotonic()
    if response.status_code != 200:
        raise RuntimeError(f"{action} answered {response.status_code}: {response.text[:300]}")
    return asked, answered


def around(lookalike: LookalikeHandle, answered: float) -> list[list[float]]:
    """SendEmail calls per :data:`BUCKET_SECONDS` from WINDOW_SECONDS before the answer to as
    long after it: [seconds from the bucket's start to the answer, calls]."""
    timeline = lookalike.timeline(BUCKET_SECONDS)
    offset = answered - timeline["started_monotonic"]
    return [
        [round(b["t"] - offset, 3), b["calls"]]
        for b in timeline["buckets"]
        if -WINDOW_SECONDS <= b["t"] - offset <= WINDOW_SECONDS
    ]


def trial(
    lookalike: LookalikeHandle,
    host: DevhostProcess,
    action: str,
    rate: float,
    number: int,
    rng: random.Random,
) -> dict[str, Any]:
    to = recipients(int(rate * SECONDS), prefix=f"{action[0]}{int(rate)}n{number}x")
    lookalike.reset()
    location = post_send(host, to)
    send_id = location.rstrip("/").rsplit("/", 1)[1]
    wait_accepted(lookalike, int(rate * STEADY_SECONDS))
    time.sleep(rng.uniform(0, WATCH_SECONDS))
    at_action = lookalike.stats()
    asked, answered = act(host, send_id, action)
    timeout = SECONDS * 4 + 120
    done = wait_done(host, location, timeout) if action == "cancel" else {}
    time.sleep(max(0.0, answered + SETTLE_SECONDS - time.monotonic()))
    stats = lookalike.stats()
    messages = lookalike.messages()
    started = stats["started_monotonic"]
    result: dict[str, Any] = {
        "action": action,
        "rate": rate,
        "trial": number,
        "recipients": len(to),
        "accepted_before": at_action["accepted"],
        "in_flight_before": at_action["in_flight"],
        "answer_ms": round((answered - asked) * 1000, 1),
        "stop_s": round(stats["last_call_monotonic"] - answered, 3),
        "accepted_after_answer": sum(1 for m in messages if started + m["t"] > answered),
        "calls_per_bucket": around(lookalike, answered),
    }
    if action == "pause":
        status = host.request("GET", f"/api/v1/emails/{send_id}")
        result["paused_state"] = status.json().get("state")
        result["accepted_while_paused"] = stats["accepted"]
        act(host, send_id, "resume")
        done = wait_done(host, location, timeout)
    delivered = lookalike.recipients()
    mine = [delivered.get(r, 0) for r in to]
    progress = done["progress"]
    result.update(
        state=done["state"],
        progress=progress,
        accepted_recipients=sum(1 for n in mine if n),
        duplicated=sum(max(0, n - 1) for n in mine),
    )
    if action == "pause":
        result["ok"] = (
            result["paused_state"] == "paused"
            and done["state"] == "completed"
            and progress["sent"] == len(to)
            and all(n == 1 for n in mine)
        )
    else:
        result["ok"] = (
            done["state"] == "canceled"
            and progress["sent"] + progress["failed"] + progress["canceled"] == len(to)
            and progress["sent"] == result["accepted_recipients"]
            and result["duplicated"] == 0
        )
    return result


def run_rate(rate: float, trials: int, rng: random.Random) -> list[dict[str, Any]]:
    results = []
    with start_lookalike(
        rate=rate, latency_ms=LATENCY_MS, verified=[SENDER], daily_quota=-1, seed=13
    ) as lookalike:
        lookalike.configure(
            rate=rate, burst_seconds=1, latency_ms=LATENCY_MS, jitter_ms=5, throttle=0, errors=0
        )
        with (
            tempfile.TemporaryDirectory(prefix="bench-") as tmp,
            app_against(lookalike, Path(tmp) / "state") as host,
        ):
            for number in range(trials):
                for action in ACTIONS:
                    outcome = trial(lookalike, host, action, rate, number, rng)
                    brief = {k: v for k, v in outcome.items() if k != "calls_per_bucket"}
                    print(json.dumps(brief), flush=True)
                    results.append(outcome)
    return results


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups = []
    for action in ACTIONS:
        for rate in sorted({t["rate"] for t in trials}):
            stops = [t["stop_s"] for t in trials if t["action"] == action and t["rate"] == rate]
            if not stops:
                continue
            chosen = [t for t in trials if t["action"] == action and t["rate"] == rate]
            median, worst = statistics.median(stops), max(stops)
            groups.append(
                {
                    "action": action,
                    "rate": rate,
                    "trials": len(stops),
                    "stop_median_s": round(median, 3),
                    "stop_max_s": round(worst, 3),
                    "median_over_promise": round(median / PROMISE_SECONDS, 3),
                    "max_over_promise": round(worst / PROMISE_SECONDS, 3),
                    "median_over_watch": round(median / WATCH_SECONDS, 3),
                    "max_over_watch": round(worst / WATCH_SECONDS, 3),
                    "answer_median_ms": round(statistics.median(t["answer_ms"] for t in chosen), 1),
                    "accepted_after_answer_max": max(t["accepted_after_answer"] for t in chosen),
                    "all_ok": all(t["ok"] for t in chosen),
                }
            )
    return groups


def table(results: dict[str, Any]) -> str:
    lines = [
        "| action, rate | trials | stop time: median, max | ÷ 2 s promise: median, max | "
        "÷ 0.5 s watch interval: median, max | answer took (median) | "
        "accepted after the answer (max) | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for g in results["summary"]:
        lines.append(
            f"| {g['action']}, {g['rate']:g}/s | {g['trials']} | {g['stop_median_s']:.3f} s, "
            f"**{g['stop_max_s']:.3f} s** | {g['median_over_promise']}, "
            f"**{g['max_over_promise']}** | {g['median_over_watch']}, {g['max_over_watch']} | "
            f"{g['answer_median_ms']:.0f} ms | {g['accepted_after_answer_max']} | "
            f"{'all pass' if g['all_ok'] else 'FAILED'} |"
        )
    every = [t["stop_s"] for t in results["trials"]]
    lines += [
        "",
        "Stop time = the last SendEmail call's arrival at the look-alike minus the answer's "
        f"arrival at the client; {len(every)} trials, all between {min(every):.3f} s and "
        f"{max(every):.3f} s. Load average (1 min) at the end: {results['load_average_1m']}.",
    ]
    return "\n".join(lines)


def chart(results: dict[str, Any]) -> None:
    """docs/benchmarks/control.png: every trial's stop time against the watch interval and the
    promise, and SendEmail calls around the answer of the slowest trial of each kind at the
    highest rate."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    trials, summary = results["trials"], results["summary"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(1, 1.3))
    for x, g in enumerate(summary):
        stops = [
            t["stop_s"] for t in trials if t["action"] == g["action"] and t["rate"] == g["rate"]
        ]
        spread = [x + (i - (len(stops) - 1) / 2) * 0.06 for i in range(len(stops))]
        left.scatter(spread, stops, s=18, color="C0", zorder=3)
        left.hlines(g["stop_median_s"], x - 0.3, x + 0.3, color="C0", linewidth=2)
    left.axhline(PROMISE_SECONDS, color="C3", linestyle="--", linewidth=1, label="promise: 2 s")
    left.axhline(
        WATCH_SECONDS, color="grey", linestyle=":", linewidth=1, label="watch interval: 0.5 s"
    )
    left.axhline(0, color="black", linewidth=0.5)
    left.set_xticks(list(range(len(summary))), [f"{g['action']}\n{g['rate']:g}/s" for g in summary])
    left.set_ylabel("last SendEmail start - answer (s)")
    left.set_ylim(min(-0.2, min(t["stop_s"] for t in trials) - 0.1), PROMISE_SECONDS + 0.3)
    left.set_title("Stop time per trial (bar: median)")
    left.legend(loc="upper left", fontsize=8)
    top = max(g["rate"] for g in summary)
    for colour, action in zip(("C0", "C1"), ACTIONS, strict=True):
        chosen = [t for t in trials if t["action"] == action and t["rate"] == top]
        shown = max(chosen, key=lambda t: t["stop_s"])  # the slowest to stop
        xs = [b[0] + BUCKET_SECONDS / 2 for b in shown["calls_per_bucket"]]
        calls = [b[1] / BUCKET_SECONDS for b in shown["calls_per_bucket"]]
        right.step(
            xs,
            calls,
            where="mid",
            color=colour,
            label=f"{action} (stop {shown['stop_s']:+.2f} s)",
        )
    right.axvline(0, color="black", linewidth=1, label="answer")
    right.axvline(PROMISE_SECONDS, color="C3", linestyle="--", linewidth=1)
    right.set_xlabel("seconds from the answer")
    right.set_ylabel(f"SendEmail calls/s ({BUCKET_SECONDS:g} s buckets)")
    right.set_title(f"The slowest trial of each at {top:g}/s")
    right.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_DIR / "control.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.control", description=__doc__)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--quick", action="store_true", help="one trial per rate (a smoke run)")
    args = parser.parse_args()
    trials = 1 if args.quick else args.trials
    rng = random.Random(20)  # noqa: S311 - where in the watch's cycle each action falls
    runs: list[dict[str, Any]] = []
    for rate in (float(r) for r in args.rates.split(",")):
        runs += run_rate(rate, trials, rng)
    results = {
        "promise_s": PROMISE_SECONDS,
        "watch_interval_s": WATCH_SECONDS,
        "latency_ms": LATENCY_MS,
        "send_seconds": SECONDS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "summary": summarise(runs),
        "trials": runs,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "control.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    chart(results)
    write_between_markers("control", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
