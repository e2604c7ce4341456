"""10,000 recipients through devhost, next to the same sends without Durable Functions.

- **app**: ``POST /api/v1/emails/aws-send`` with N recipients to a devhost running the real app
  (embedded SES emulator, Azurite ledger), polled through ``Location`` until it finishes.
- **baseline**: the same N messages sent by one ``SesSender`` in one thread straight to a moto
  SES server in this process: the bare cost of the SES calls, without HTTP starter,
  orchestration, activities, ledger or persistence.

Reported: seconds, recipients per second, the ratio app / baseline, and peak memory (RSS) of
the devhost process next to this benchmark process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
SENDER = "se@aifactory.page"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_app(recipients: list[str], rate: int) -> dict[str, Any]:
    port, key = _free_port(), secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="bench-devhost-") as tmp:
        env = {
            **os.environ,
            "DEVHOST_FUNCTION_KEY": key,
            "DEVHOST_SES_MAX_SEND_RATE": str(rate),
            "DEVHOST_SES_MAX_24_HOUR_SEND": "1000000",
            "DEVHOST_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "devhost", "--port", str(port), "--state", tmp + "/s"]
        with open(Path(tmp) / "log", "wb") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
        base = f"http://127.0.0.1:{port}"
        headers = {"x-functions-key": key}
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if requests.get(f"{base}/api/health", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "log").read_text())
                time.sleep(0.1)
            body = {
                "senderEmail": SENDER,
                "recipientEmails": recipients,
                "subject": "벤치",
                "body": "b",
            }
            started = time.perf_counter()
            response = requests.post(
                f"{base}/api/v1/emails/aws-send", json=body, headers=headers, timeout=60
            )
            response.raise_for_status()
            location = response.headers["Location"]
            while True:
                status = requests.get(location, headers=headers, timeout=30)
                if status.status_code == 200:
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            result = status.json()
            return {
                "seconds": round(elapsed, 2),
                "recipients_per_second": round(len(recipients) / elapsed, 1),
                "sent": result["progress"]["sent"],
                "failed": result["progress"]["failed"],
                "peak_rss_mib": round(_peak_rss_mib(proc.pid), 1),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def run_baseline(recipients: list[str]) -> dict[str, Any]:
    from devhost.emulators.ses import SesEmulator
    from sendmail.ses import SesSender, create_sesv2_client
    from sendmail.settings import Settings

    settings = Settings()
    with SesEmulator(
        region=settings.AWS_REGION, allowed_senders=[SENDER], allowed_domains=[]
    ) as ses:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        client = create_sesv2_client(settings, endpoint_url=ses.endpoint_url)
        sender = SesSender(client, settings=settings)
        started = time.perf_counter()
        deliveries = sender.send(SENDER, recipients, "벤치", "b").deliveries
        elapsed = time.perf_counter() - started
    return {
        "seconds": round(elapsed, 2),
        "recipients_per_second": round(len(recipients) / elapsed, 1),
        "sent": sum(1 for d in deliveries if d.ok),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=100_000, help="emulated SES MaxSendRate")
    args = parser.parse_args()
    recipients = [f"bench{i:06d}@example.com" for i in range(args.recipients)]
    baseline = run_baseline(recipients)
    app = run_app(recipients, args.rate)
    report = {
        "recipients": args.recipients,
        "baseline_direct_ses_sender": baseline,
        "app_through_devhost": app,
        "ratio_time_app_over_baseline": round(app["seconds"] / baseline["seconds"], 2),
        "ratio_peak_rss_app_over_baseline": round(
            app["peak_rss_mib"] / baseline["peak_rss_mib"], 2
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
