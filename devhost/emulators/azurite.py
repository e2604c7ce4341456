"""Azurite (the Azure Storage emulator) on loopback, from the repository's ``node_modules``.

Install it with ``npm ci`` at the repository root (``package.json`` pins the version). Used by the
tests (in memory) and by the dev host (persistent under its state directory, so the send ledger
survives a restart; its output of the latest start is in ``<location>/azurite.log``).

Azurite keeps its data in memory and writes it to ``--location`` every 5 s and when it closes
gracefully (SIGINT). A persistent Azurite started here is made crash-safe as follows:

- **It closes exactly once when its parent goes, however the parent dies.** It runs under
  ``azurite_guard.js`` with a pipe as stdin whose only write end is the parent's: end of file
  (parent stopped it, or died, even by ``SIGKILL``) starts Azurite's graceful close. On Linux
  ``PR_SET_PDEATHSIG`` sends SIGINT as a backstop. The guard ignores every SIGINT after the
  first: the kernel sends the death signal once per thread of a dying multi-threaded parent (the
  child is handed from thread to thread), and bare Azurite dies unsaved on the second one
  (measured: 600 to 1,000 acknowledged records lost per crash of a threaded parent, everything
  since its last 5 s save).
- **It is not in its parent's process group** (its own session): ``kill -9 -<pgid>`` of devhost,
  or a terminal's Ctrl-C, does not reach it; devhost's end still closes it.
- **One Azurite per location.** The parent takes an exclusive ``flock`` on
  ``<location>/azurite.lock`` before starting it and hands the locked descriptor to it: the lock
  is released only when the parent *and* Azurite are gone, i.e. after Azurite has written its data
  and exited. The next start on that location waits for it (``LOCK_TIMEOUT_SECONDS``) instead of
  loading files that the previous Azurite is about to overwrite.

What is still lost: a ``SIGKILL`` of the Azurite process itself (or the OOM killer) loses what it
acknowledged since its last save, at most ~5 s of writes (the interval is fixed in Azurite).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = REPO_ROOT / "node_modules" / ".bin"
GUARD = Path(__file__).resolve().with_name("azurite_guard.js")
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
LOCK_FILE = "azurite.lock"
#: How long a start waits for the previous Azurite on the same location to save and exit. Its
#: graceful close serialises the whole database once: ~50 ms for 5,000 ledger rows, 0.9 s for
#: 150,000 (77 MB) on a 2-core machine. Longer than that means it is not closing: another devhost's
#: running Azurite (same state dir twice), or it hangs. Starting anyway would let the two
#: overwrite each other's files, so the start fails instead and names the process.
LOCK_TIMEOUT_SECONDS = 60.0
LOCK_LOG_EVERY_SECONDS = 10.0


class AzuriteNotInstalled(RuntimeError):
    """``node_modules/.bin/azurite*`` is missing: run ``npm ci`` at the repository root."""


class AzuriteLocationBusy(RuntimeError):
    """Another Azurite still holds the data location (see ``LOCK_TIMEOUT_SECONDS``)."""


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


def _command_prefix(services: Sequence[str]) -> list[str]:
    """``node azurite_guard.js <Azurite's entry script>`` for ``services``."""
    name = f"azurite-{services[0]}" if len(services) == 1 else "azurite"
    path = BIN_DIR / name
    if not path.exists():
        raise AzuriteNotInstalled(
            f"{path} is missing. Azurite is a dev dependency in package.json: "
            f"run `npm ci` in {REPO_ROOT} (Node.js 20+), then run the tests again."
        )
    node = shutil.which("node")
    if node is None:
        raise AzuriteNotInstalled("`node` is not on PATH: Azurite needs Node.js 20+.")
    return [node, str(GUARD), str(path)]


# --- one Azurite per location -----------------------------------------------------------------
def _lock_holder(lock_path: Path) -> str:
    """The pid written in the lock file by the last start, for messages (may be stale)."""
    try:
        pid = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown pid"
    return f"pid {pid}" if pid.isdigit() else "unknown pid"


@contextlib.contextmanager
def hold_location(location: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[int]:
    """Hold ``<location>/azurite.lock`` exclusively; yields the locked descriptor.

    Waits (up to ``timeout`` seconds, with a log line at once and every
    ``LOCK_LOG_EVERY_SECONDS``) while another process holds it, then raises
    :class:`AzuriteLocationBusy`. A ``flock`` belongs to the open file, not to a process: every
    process that inherited the descriptor keeps it locked until the last of them has closed it
    or exited, so an Azurite started with it keeps the location locked after its parent died.
    """
    import fcntl  # POSIX only, like the rest of devhost's process handling

    location.mkdir(parents=True, exist_ok=True)
    lock_path = location / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        started = time.monotonic()
        next_log = started
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            if waited >= timeout:
                raise AzuriteLocationBusy(
                    f"{location} is still in use by another Azurite ({_lock_holder(lock_path)}) "
                    f"after {timeout:.0f} s: another devhost runs on this state directory, or "
                    "that Azurite hangs. Stop it (SIGINT saves its data; SIGKILL loses its last "
                    "seconds) and start again."
                )
            if time.monotonic() >= next_log:
                logger.warning(
                    "Waiting for the previous Azurite (%s) to save its data in %s and exit "
                    "(%.0f s so far, at most %.0f s)",
                    _lock_holder(lock_path),
                    location,
                    waited,
                    timeout,
                )
                next_log += LOCK_LOG_EVERY_SECONDS
            time.sleep(0.02)
        if time.monotonic() - started > 0.1:
            logger.info("The previous Azurite has exited after %.1f s", time.monotonic() - started)
        yield fd
    finally:
        os.close(fd)  # the lock stays held while a started Azurite keeps its inherited copy


def _note_holder(lock_fd: int, pid: int) -> None:
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{pid}\n".encode(), 0)


# --- the process ------------------------------------------------------------------------------
def _stop(process: subprocess.Popen[bytes]) -> None:
    """Graceful close: end of file on Azurite's stdin (the path a crashed parent takes too)."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is not None:
        return
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # Azurite's own close, should the guard not work
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGINT the child when its parent thread dies.

    A backstop for the stdin pipe (a forked copy of the parent would keep its write end open).
    Start Azurite from a long-lived thread: the signal follows the *thread* that started it.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGINT)

    return preexec


def _launch(
    prefix: Sequence[str],
    services: Sequence[str],
    workdir: Path,
    log_path: Path,
    location: Path | None,
    lock_fd: int | None,
) -> tuple[subprocess.Popen[bytes], dict[str, int]] | None:
    """Start Azurite on fresh ports; ``None`` if it exited early (a port taken meanwhile)."""
    ports = {service: _free_port() for service in services}
    command = list(prefix)
    for service, port in ports.items():
        command += [f"--{service}Host", HOST, f"--{service}Port", str(port)]
    if len(services) > 1:  # the all-in-one binary runs every service: the others on free ports
        for service in SERVICES:  # too, or they take the defaults (10000...) someone else holds
            if service not in ports:
                command += [f"--{service}Host", HOST, f"--{service}Port", str(_free_port())]
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
            stdin=subprocess.PIPE,  # the guard's watchdog: EOF when this process is gone
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=() if lock_fd is None else (lock_fd,),
            start_new_session=True,  # out of our process group: a group kill does not reach it
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 (no threads are started before exec)
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    pending = set(ports.values())
    while pending:
        if process.poll() is not None:
            _stop(process)  # closes the pipe
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

    In memory unless ``location`` is given, where its data then persists across runs; a start on
    a location waits for the previous Azurite there to have saved and exited (module docs).
    """
    unknown = set(services) - set(SERVICES)
    if not services or unknown:
        raise ValueError(f"services must be some of {SERVICES}, got {list(services)}")
    prefix = _command_prefix(services)
    with contextlib.ExitStack() as stack:
        if location is None:
            lock_fd = None
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azurite-")))
        else:  # its log stays with its data: a killed parent cannot remove a temporary dir
            lock_fd = stack.enter_context(hold_location(location))
            workdir = location
        log_path = workdir / "azurite.log"
        log_path.write_bytes(b"")  # this start's attempts only (the lock: nobody else writes it)
        for _ in range(PORT_ATTEMPTS):
            launched = _launch(prefix, services, workdir, log_path, location, lock_fd)
            if launched is not None:
                break
        else:
            raise RuntimeError(
                f"Azurite exited during start-up {PORT_ATTEMPTS} times; "
                f"log:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        process, ports = launched
        if lock_fd is not None:
            _note_holder(lock_fd, process.pid)
        try:
            yield Azurite(ports=ports, pid=process.pid)
        finally:
            _stop(process)
