"""Fixtures for devhost: a factory that runs ``python -m devhost`` as a subprocess.

``devhost_factory(app_dir, env=..., emulators=...)`` returns a started :class:`DevhostProcess`
that is driven only over HTTP on loopback and killed at teardown. It works for any app dir
(the toy app here, or the real app at the repo root).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devhost.process import REPO_ROOT, DevhostProcess, free_port

__all__ = ["REPO_ROOT", "TOYAPP_DIR", "DevhostProcess", "free_port"]

TOYAPP_DIR = Path(__file__).resolve().parent / "toyapp"


DevhostFactory = Callable[..., DevhostProcess]


@pytest.fixture
def devhost_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostFactory]:
    """Start devhost subprocesses; every one is killed at teardown."""
    started: list[DevhostProcess] = []

    def factory(
        app_dir: Path | str = TOYAPP_DIR,
        *,
        env: Mapping[str, str] | None = None,
        emulators: bool = False,
        state_dir: Path | None = None,
    ) -> DevhostProcess:
        state = state_dir or tmp_path_factory.mktemp("devhost") / "state"
        process = DevhostProcess(Path(app_dir), state, env=env, emulators=emulators)
        started.append(process)
        return process.start()

    yield factory
    for process in started:
        process.kill()
        process.session.close()


_TOY_INDEX: list[Any] = []


@pytest.fixture(scope="session")
def toy_index() -> Any:
    """The toy app's functions, indexed once per process (``get_functions`` only works once)."""
    if not _TOY_INDEX:
        from devhost.app_loader import index_functions
        from tests.devhost.toyapp import function_app

        _TOY_INDEX.append(index_functions(function_app.app))
    return _TOY_INDEX[0]


def lookalike_env(endpoint_url: str, **settings: str) -> dict[str, str]:
    """The app's environment for sending to the SES look-alike of ``bench/`` at
    ``endpoint_url`` (dummy credentials, its region, batches of 100), plus ``settings``."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "ap-northeast-2",
        "SENDMAIL_SES_BATCH_SIZE": "100",
        **settings,
    }


#: A fast, generous emulated SES, so end-to-end tests measure the app rather than the pacing.
FAST_SES = {"DEVHOST_SES_MAX_SEND_RATE": "2000", "DEVHOST_SES_MAX_24_HOUR_SEND": "1000000"}


@contextlib.contextmanager
def real_app(state_dir: Path, env: Mapping[str, str]) -> Iterator[DevhostProcess]:
    """The real ``function_app`` under devhost with its embedded emulators, stopped after use."""
    process = DevhostProcess(REPO_ROOT, state_dir, env=env, emulators=True)
    process.start(timeout=90)
    try:
        yield process
    finally:
        process.stop()
        process.session.close()
