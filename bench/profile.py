"""Where devhost's CPU goes while it sends: py-spy with ``--gil`` on a 10,000-recipient send.

The send runs as in :func:`bench.sending.cost` (the SES look-alike at 3,000/s and 5 ms, so the
app is the bottleneck), once with the ledger's group commit and once with one write per
recipient. py-spy samples only the threads holding the GIL (``--gil``: the ones using the CPU
Python can account for) for the whole send; the report is the share of samples by what the
stack was doing (the first of :data:`CATEGORIES` found on it: inclusive), and the functions most
often on top of the stack (self).

``python -m bench.profile`` writes ``docs/benchmarks/profile.json`` (py-spy must be installed:
``bench/requirements.txt``; it needs ptrace, which a container may deny).
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.sending import (
    COST_LATENCY_MS,
    COST_RATE,
    OUT_DIR,
    SENDER,
    app_against,
    fast_lookalike,
    post_send,
    recipients,
    wait_done,
)
from bench.ses_lookalike import LookalikeHandle, start_lookalike

PY_SPY = Path(sys.executable).with_name("py-spy")
#: What a sample was doing, by the frames on its stack, first match wins: a sample under the
#: ledger's write is the ledger's even when its top frame is in http.client.
CATEGORIES = (
    ("sendmail/sending/ledger.py", "ledger writes (azure-data-tables)"),
    ("GroupCommit.", "ledger writes (azure-data-tables)"),
    ("botocore/", "SES SendEmail calls (botocore)"),
    ("azure/durable_functions/", "Durable SDK (replay)"),
    ("devhost/durable/", "devhost's Durable engine"),
    ("sendmail/", "the app, other"),
    ("azure/core/", "azure-core, other"),
    ("devhost/", "devhost, other"),
)


def category(stack: str) -> str:
    for needle, name in CATEGORIES:
        if needle in stack:
            return name
    return "other (threads, stdlib)"


@contextlib.contextmanager
def spying(pid: int, raw: Path, rate: int = 50) -> Iterator[None]:
    """``py-spy record --gil`` on ``pid`` while inside; its raw stacks in ``raw`` afterwards."""
    spy = subprocess.Popen(  # noqa: S603 (our own py-spy, our own process)
        [
            str(PY_SPY),
            "record",
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--pid",
            str(pid),
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)  # py-spy attached
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        _, err = spy.communicate(timeout=60)
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")


def stacks(raw: Path) -> Iterator[tuple[str, int]]:
    """Each stack py-spy wrote (its frames ``;``-separated, outermost first) and its samples."""
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            yield stack, int(samples)


def profile(lookalike: LookalikeHandle, count: int, group_ms: float) -> dict[str, Any]:
    to = recipients(count, prefix=f"p{int(group_ms)}x")
    fast_lookalike(lookalike)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        raw = Path(tmp) / "stacks.txt"
        with app_against(
            lookalike, Path(tmp) / "state", SENDMAIL_LEDGER_GROUP_MS=str(group_ms)
        ) as host:
            assert host.proc is not None
            with spying(host.proc.pid, raw):
                started = time.monotonic()
                wait_done(host, post_send(host, to), timeout=900)
                elapsed = time.monotonic() - started
        sampled = list(stacks(raw))
    by_category: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, n in sampled:
        total += n
        by_category[category(stack)] += n
        by_function[stack.split(";")[-1]] += n

    def share(n: int) -> float:
        return round(100 * n / max(1, total), 1)

    return {
        "group_ms": group_ms,
        "recipients": count,
        "seconds": round(elapsed, 2),
        "samples": total,
        "by_what_percent": {k: share(v) for k, v in by_category.most_common()},
        "top_functions_percent": {k: share(v) for k, v in by_function.most_common(12)},
    }


def main() -> None:
    with start_lookalike(
        rate=COST_RATE, latency_ms=COST_LATENCY_MS, verified=[SENDER], daily_quota=10_000_000
    ) as lookalike:
        results = {
            "per_record": profile(lookalike, 10_000, 0),
            "grouped": profile(lookalike, 10_000, 50),
        }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "profile.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
