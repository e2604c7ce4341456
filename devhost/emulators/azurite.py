"""Azurite (the Azure Storage emulator) on loopback, from the repository's ``node_modules``.

Install it with ``npm ci`` at the repository root (``package.json`` pins the version). Used by the
tests (in memory) and by the dev host (persistent under its state directory, so the send ledger
survives a restart). On Linux the Azurite process is tied to its parent: if the parent dies, even
by ``SIGKILL``, Azurite gets ``SIGINT``, saves its data and exits: no orphan keeps the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = REPO_ROOT / "node_modules" / ".bin"
HOST = "127.0.0.1"
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key: public, documented, accepted only by emulators.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES = ("blob", "queue", "table")
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
PORT_ATTEMPTS = 3


class AzuriteNotInstalled(RuntimeError):
    """``node_modules/.bin/azurite*`` is missing: run ``npm ci`` at the repository root."""


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: its endpoints and a connection string for them."""

    ports: dict[str, int]
    pid: int | None = None
    host: str = HOST
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY

    def endpoint(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}/{self.account_name}"

    @property
    def table_endpoint(self) -> str:
        return self.endpoint("table")

    @property
    def connection_string(self) -> str:
        parts = [
            "DefaultEndpointsProtocol=http",
            f"AccountName={self.account_name}",
            f"AccountKey={self.account_key}",
        ]
        parts += [
            f"{s.capitalize()}Endpoint={self.endpoint(s)}" for s in SERVICES if s in self.ports
        ]
        return ";".join(parts) + ";"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _binary(services: Sequence[str]) -> Path:
    name = f"azurite-{services[0]}" if len(services) == 1 else "azurite"
    path = BIN_DIR / name
    if not path.exists():
        raise AzuriteNotInstalled(
            f"{path} is missing. Azurite is a dev dependency in package.json: "
            f"run `npm ci` in {REPO_ROOT} (Node.js 20+), then run the tests again."
        )
    return path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # Azurite's graceful close (it saves its data)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGINT the child when its parent dies.

    SIGINT, not SIGTERM: Azurite saves its data on SIGINT only (on SIGTERM Node just exits).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGINT)

    return preexec


def _launch(
    binary: Path,
    services: Sequence[str],
    workdir: Path,
    log_path: Path,
    location: Path | None,
) -> tuple[subprocess.Popen[bytes], dict[str, int]] | None:
    """Start Azurite on fresh ports; ``None`` if it exited early (a port taken meanwhile)."""
    ports = {service: _free_port() for service in services}
    command = [str(binary)]
    for service, port in ports.items():
        command += [f"--{service}Host", HOST, f"--{service}Port", str(port)]
    if location is None:
        command.append("--inMemoryPersistence")  # (it refuses --location; cwd keeps strays)
    else:
        command += ["--location", str(location)]
    command += [
        "--skipApiVersionCheck",
        "--disableProductStyleUrl",
        "--loose",
        "--disableTelemetry",  # on by default since 3.34: it would call out of this machine
        "--silent",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (the argv is ours; no shell)
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 (no threads are started before exec)
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    pending = set(ports.values())
    while pending:
        if process.poll() is not None:
            return None
        if time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(
                f"Azurite did not accept connections within {START_TIMEOUT_SECONDS:.0f} s; "
                f"log:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        pending = {port for port in pending if not _accepts(port)}
        if pending:
            time.sleep(0.1)
    return process, ports


@contextlib.contextmanager
def start_azurite(
    services: Sequence[str] = ("table",), *, location: Path | None = None
) -> Iterator[Azurite]:
    """Run Azurite for ``services`` (any of blob, queue, table) on loopback.

    In memory unless ``location`` is given, where its data then persists across runs.
    """
    unknown = set(services) - set(SERVICES)
    if not services or unknown:
        raise ValueError(f"services must be some of {SERVICES}, got {list(services)}")
    binary = _binary(services)
    with tempfile.TemporaryDirectory(prefix="azurite-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "azurite.log"
        for _ in range(PORT_ATTEMPTS):
            launched = _launch(binary, services, workdir, log_path, location)
            if launched is not None:
                break
        else:
            raise RuntimeError(
                f"Azurite exited during start-up {PORT_ATTEMPTS} times; "
                f"log:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        process, ports = launched
        try:
            yield Azurite(ports=ports, pid=process.pid)
        finally:
            _stop(process)
