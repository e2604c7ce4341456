"""A real Azurite (the Azure Storage emulator) on loopback, from the repo's ``node_modules``.

Install it once with ``npm ci`` at the repository root (``package.json`` pins the version).
A missing install fails the tests that need it, loudly: they are never skipped.

- ``azurite``: session-scoped, the table service only (``azurite-table``, in memory).
- ``azurite_all``: session-scoped, blob + queue + table in one process (``azurite``).
- ``start_azurite(services)``: the context manager both use, for scripts and benchmarks.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _launch(
    binary: Path, services: Sequence[str], workdir: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], dict[str, int]] | None:
    """Start Azurite on fresh ports; ``None`` if it exited early (a port taken meanwhile)."""
    ports = {service: _free_port() for service in services}
    command = [str(binary)]
    for service, port in ports.items():
        command += [f"--{service}Host", HOST, f"--{service}Port", str(port)]
    command += [
        "--inMemoryPersistence",  # (it refuses --location; cwd keeps any stray file in tmp)
        "--skipApiVersionCheck",
        "--disableProductStyleUrl",
        "--loose",
        "--disableTelemetry",  # on by default since 3.34: it would call out of this machine
        "--silent",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # the argv is ours; no shell
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
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
def start_azurite(services: Sequence[str] = ("table",)) -> Iterator[Azurite]:
    """Run Azurite for ``services`` (any of blob, queue, table) on loopback, in memory."""
    unknown = set(services) - set(SERVICES)
    if not services or unknown:
        raise ValueError(f"services must be some of {SERVICES}, got {list(services)}")
    binary = _binary(services)
    with tempfile.TemporaryDirectory(prefix="azurite-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "azurite.log"
        for _ in range(PORT_ATTEMPTS):
            launched = _launch(binary, services, workdir, log_path)
            if launched is not None:
                break
        else:
            raise RuntimeError(
                f"Azurite exited during start-up {PORT_ATTEMPTS} times; "
                f"log:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        process, ports = launched
        try:
            yield Azurite(ports=ports)
        finally:
            _stop(process)


def _fixture(services: Sequence[str]) -> Iterator[Azurite]:
    try:
        with start_azurite(services) as azurite:
            yield azurite
    except AzuriteNotInstalled as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's table service on 127.0.0.1 (a free port), in memory, for the whole session."""
    yield from _fixture(("table",))


@pytest.fixture(scope="session")
def azurite_all() -> Iterator[Azurite]:
    """Azurite's blob, queue and table services in one process, for the whole session."""
    yield from _fixture(SERVICES)
