"""Cold-start cost: ``import function_app`` next to ``import azure.durable_functions`` alone.

Each import runs in a fresh interpreter (as a cold worker would), alternating the two so machine
noise hits both alike; the report gives medians and the ratio app / baseline.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import time, sys; t = time.perf_counter(); import {module}; "
    "print((time.perf_counter() - t) * 1000)"
)


def measure(module: str) -> float:
    out = subprocess.run(  # noqa: S603 (our own interpreter and module names)
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(out.stdout.strip())


def run(rounds: int = 15) -> dict[str, float]:
    baseline: list[float] = []
    app: list[float] = []
    measure("azure.durable_functions")  # warm the OS file cache for both
    measure("function_app")
    for _ in range(rounds):
        baseline.append(measure("azure.durable_functions"))
        app.append(measure("function_app"))
    base_ms = statistics.median(baseline)
    app_ms = statistics.median(app)
    return {
        "rounds": rounds,
        "baseline_import_azure_durable_functions_ms": round(base_ms, 1),
        "import_function_app_ms": round(app_ms, 1),
        "ratio_app_over_baseline": round(app_ms / base_ms, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
