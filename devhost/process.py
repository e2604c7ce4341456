"""Run ``python -m devhost`` as a subprocess and drive it over HTTP (tests and benchmarks).

:class:`DevhostProcess` keeps its port, key and state dir across restarts, so a test can kill it
(``SIGKILL``, or its whole process group) and start it again on the same state at once.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class DevhostProcess:
    """One devhost subprocess on a fixed port and state dir (survives restarts)."""

    def __init__(
        self,
        app_dir: Path,
        state_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        emulators: bool = False,
        port: int | None = None,
        key: str | None = None,
        root: Path | None = None,
    ) -> None:
        #: Whose devhost runs (another checkout's, for a baseline); this repository's by default.
        self.root = Path(root) if root is not None else REPO_ROOT
        self.app_dir = Path(app_dir)
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.key = key or secrets.token_urlsafe(16)
        self.emulators = emulators
        self.extra_env = dict(env or {})
        self.log_path = self.state_dir.parent / f"{self.state_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.session = requests.Session()

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = STARTUP_TIMEOUT) -> DevhostProcess:
        command = [
            sys.executable,
            "-m",
            "devhost",
            "--app-dir",
            str(self.app_dir),
            "--port",
            str(self.port),
            "--state",
            str(self.state_dir),
        ]
        if not self.emulators:
            command.append("--no-emulators")
        env = {**os.environ, **self.extra_env, "DEVHOST_FUNCTION_KEY": self.key}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            # its own process group, as a shell job: kill_group() reaches devhost and whatever
            # it started in that group, and nothing of the caller's
            self.proc = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
                command,
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"devhost exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.base_url}/_dev/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"devhost not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """``SIGKILL``: no clean shutdown, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def kill_group(self) -> None:
        """``SIGKILL`` to devhost's whole process group (``kill -9 -PGID``)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self, *, kill: bool = True) -> DevhostProcess:
        """Kill (or stop) and start again on the same port and state dir."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # --- HTTP ---------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, *, auth: bool = True, timeout: float = 30, **kw: Any
    ) -> requests.Response:
        """``method`` ``path`` on devhost; ``auth`` adds the function key header."""
        headers = dict(kw.pop("headers", None) or {})
        if auth:
            headers.setdefault("x-functions-key", self.key)
        return self.session.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=timeout, **kw
        )

    def status(self, instance_id: str, **params: Any) -> requests.Response:
        return self.request(
            "GET", f"/runtime/webhooks/durabletask/instances/{instance_id}", params=params
        )

    def wait_for(
        self,
        instance_id: str,
        statuses: tuple[str, ...] = ("Completed", "Failed", "Terminated"),
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Poll the Durable status API until the instance reaches one of ``statuses``."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.status(instance_id)
            if response.status_code != 404:
                body = response.json()
                if body.get("runtimeStatus") in statuses:
                    return body
            time.sleep(0.1)
        raise TimeoutError(f"{instance_id} not in {statuses} after {timeout}s: {body}")
