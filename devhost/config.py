"""Host configuration: ``local.settings.json``, ``host.json``, the state directory, the key."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KEY_ENV = "DEVHOST_FUNCTION_KEY"
KEY_FILE = "function-key"
#: A key that opens only the app's caller routes (the "caller" group of ``access.json``), as a
#: caller's per-function keys do on Azure.
CALLER_KEY_ENV = "DEVHOST_CALLER_KEY"
ACCESS_FILE = "access.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def load_local_settings(app_dir: Path) -> list[str]:
    """Put ``local.settings.json`` ``Values`` into the environment without overriding it.

    Returns the names that were set (never the values).
    """
    path = app_dir / "local.settings.json"
    if not path.is_file():
        return []
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return []
    applied: list[str] = []
    for name, value in values.items():
        if name in os.environ or value is None:
            continue
        os.environ[name] = str(value)
        applied.append(name)
    return applied


@dataclass(frozen=True)
class HostSettings:
    """What devhost reads from ``host.json``."""

    route_prefix: str = "api"
    task_hub: str = "DevHostHub"
    max_concurrent_activities: int = 10
    max_concurrent_orchestrations: int = 4
    #: ``extensions.queues`` as written (read by ``devhost.triggers.queues.QueuesOptions``).
    queues: dict[str, Any] = field(default_factory=dict)


def load_host_json(app_dir: Path) -> HostSettings:
    path = app_dir / "host.json"
    if not path.is_file():
        return HostSettings()
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return HostSettings()
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    durable = extensions.get("durableTask") or {}
    hub = str(durable.get("hubName") or HostSettings.task_hub)
    if hub.startswith("%") and hub.endswith("%"):
        hub = os.environ.get(hub.strip("%"), HostSettings.task_hub)
    return HostSettings(
        route_prefix=str(http.get("routePrefix", "api")),
        task_hub=hub,
        max_concurrent_activities=int(durable.get("maxConcurrentActivityFunctions") or 10),
        max_concurrent_orchestrations=int(durable.get("maxConcurrentOrchestratorFunctions") or 4),
        queues=dict(extensions.get("queues") or {}),
    )


def function_key(state_dir: Path) -> tuple[str, str]:
    """The local function key and where it came from (``env``, ``state`` or ``generated``)."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return from_env, "env"
    path = state_dir / KEY_FILE
    if path.is_file():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored, "state"
    key = secrets.token_urlsafe(32)
    write_private(path, key)
    return key, "generated"


def per_function_keys(app_dir: Path, function_names: Iterable[str]) -> dict[str, frozenset[str]]:
    """Function name -> the per-function key values that open it besides the host key.

    On Azure a function-level route opens with a host key or with one of *that function's*
    keys. devhost's host key is ``DEVHOST_FUNCTION_KEY``; ``DEVHOST_CALLER_KEY``, when set, is
    set on every function of the ``caller`` group of the app's ``access.json`` — what
    ``scripts/function-keys`` does on Azure — so it opens those and nothing else."""
    caller_key = os.environ.get(CALLER_KEY_ENV)
    if not caller_key:
        return {}
    path = app_dir / ACCESS_FILE
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))["perFunctionKeys"]
        callers = [str(name) for name in groups["caller"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{CALLER_KEY_ENV} is set but {path} has no caller group: {exc}") from exc
    unknown = sorted(set(callers) - set(function_names))
    if unknown:
        logger.warning("%s names functions the app does not have: %s", path, unknown)
    return {name: frozenset({caller_key}) for name in callers}
