"""Import ``function_app.app`` from the app directory and index its functions."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.routing import RouteTemplate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str
    trigger_name: str
    client_names: tuple[str, ...]
    func: Callable[..., Any]


@dataclass(frozen=True)
class ActivityFunction:
    name: str
    input_name: str
    func: Callable[..., Any]


@dataclass(frozen=True)
class TriggeredFunction:
    """A function whose trigger devhost runs itself (``queueTrigger``, ``timerTrigger``:
    ``devhost.triggers``), with its trigger binding as ``function.json`` states it to the host
    (``queueName``, ``connection``, ``schedule``, ``runOnStartup``, ``useMonitor``, ...)."""

    name: str
    trigger_name: str
    binding: dict[str, Any]
    func: Callable[..., Any]
    #: Parameters bound to a Durable client (``durableClient``), as on an HTTP function.
    client_names: tuple[str, ...] = ()


@dataclass
class FunctionIndex:
    """The app's functions by kind, as devhost serves them."""

    http: list[HttpFunction] = field(default_factory=list)
    orchestrators: dict[str, Callable[..., Any]] = field(default_factory=dict)
    activities: dict[str, ActivityFunction] = field(default_factory=dict)
    queues: list[TriggeredFunction] = field(default_factory=list)
    timers: list[TriggeredFunction] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.http)} HTTP, {len(self.orchestrators)} orchestrator, "
            f"{len(self.activities)} activity, {len(self.queues)} queue, "
            f"{len(self.timers)} timer function(s)"
        )


def load_app(app_dir: Path, module_name: str = "function_app") -> Any:
    """Import ``<app_dir>/function_app.py`` as ``function_app`` and return its ``app``."""
    path = app_dir / f"{module_name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no {module_name}.py in {app_dir}")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if app is None:
        raise AttributeError(f"{path} defines no `app`")
    return app


def _auth_level(value: Any, default: Any) -> str:
    level = value if value is not None else default
    text = str(getattr(level, "value", level) or "function")
    return text.lower()


def index_functions(app: Any, route_prefix: str = "api") -> FunctionIndex:
    """Index ``app.get_functions()`` (call once per process: the SDK raises on a second call)."""
    index = FunctionIndex()
    for function in app.get_functions():
        name = function.get_function_name()
        trigger = function.get_trigger()
        kind = getattr(trigger, "type", None)
        func = function.get_user_function()
        if kind == "httpTrigger":
            clients = tuple(
                b.name for b in function.get_bindings() if getattr(b, "type", "") == "durableClient"
            )
            others = [
                b.type
                for b in function.get_bindings()
                if b.type not in ("httpTrigger", "http", "durableClient")
            ]
            if others:
                logger.warning("function %s: bindings %s are not supported", name, others)
            methods = None
            if trigger.methods:
                methods = frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods)
            route = trigger.route if trigger.route is not None else name
            prefix = route_prefix.strip("/")
            template = f"{prefix}/{route.strip('/')}" if prefix else route.strip("/")
            index.http.append(
                HttpFunction(
                    name=name,
                    route=RouteTemplate(template),
                    methods=methods,
                    auth_level=_auth_level(trigger.auth_level, getattr(app, "auth_level", None)),
                    trigger_name=trigger.name,
                    client_names=clients,
                    func=func,
                )
            )
        elif kind == "orchestrationTrigger":
            index.orchestrators[getattr(trigger, "orchestration", None) or name] = func
        elif kind == "activityTrigger":
            activity = getattr(trigger, "activity", None) or name
            index.activities[activity] = ActivityFunction(activity, trigger.name, func)
        elif kind in ("queueTrigger", "timerTrigger"):
            bindings = json.loads(function.get_function_json())["bindings"]
            others = [b["type"] for b in bindings if b.get("type") not in (kind, "durableClient")]
            if others:
                logger.warning("function %s: bindings %s are not supported", name, others)
            binding = next(b for b in bindings if b.get("type") == kind)
            clients = tuple(b["name"] for b in bindings if b.get("type") == "durableClient")
            found = TriggeredFunction(name, trigger.name, binding, func, clients)
            (index.queues if kind == "queueTrigger" else index.timers).append(found)
        else:
            index.unsupported.append(f"{name} ({kind})")
    index.http.sort(key=lambda f: f.route.sort_key)
    return index
