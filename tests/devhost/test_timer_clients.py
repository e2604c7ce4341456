"""A timer function that takes a Durable client (the app's ``retention``) gets the binding data
devhost gives an HTTP function's client; a listener with none to give refuses the function, as
the host lists a function whose binding it cannot satisfy in error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devhost.app_loader import TriggeredFunction
from devhost.triggers.clock import ManualClock
from devhost.triggers.names import BindingError
from devhost.triggers.timers import FileScheduleMonitor, TimerListener

BINDING = '{"taskHubName": "SendMail", "rpcBaseUrl": "http://127.0.0.1:7071/_devhost/rpc/t/"}'


async def invoke(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    return func(**kwargs)


def test_a_timer_function_gets_the_durable_client_binding(tmp_path: Path) -> None:
    got: list[tuple[bool, str]] = []

    def purge(timer: Any, client: str) -> None:
        got.append((timer.past_due, client))

    function = TriggeredFunction(
        "purge", "timer", {"type": "timerTrigger", "schedule": "0 30 3 * * *"}, purge, ("client",)
    )
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    monitor = FileScheduleMonitor(tmp_path)
    with pytest.raises(BindingError):
        TimerListener(function, invoke, clock, monitor, {})

    listener = TimerListener(function, invoke, clock, monitor, {}, client_binding=lambda: BINDING)
    asyncio.run(listener.invoke_manually())

    assert got == [(False, BINDING)]
