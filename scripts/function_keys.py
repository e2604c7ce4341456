"""Callers' keys on Azure: one named key, one value, on every caller route — and nothing else.

A function-level route opens with a host key (every route of the app) or with one of *its own*
function keys. Callers get the second kind: ``caller-<name>``, one value set on each function
of the ``caller`` group of ``access.json``, so a caller's key opens the send and status routes
and never the operators' (the suppression list, the account). Per-function keys can only be
set once the functions exist, i.e. after the code is deployed: hence this script, not the Bicep.

    python3 scripts/function_keys.py add acme       # prints the new key once
    python3 scripts/function_keys.py rotate acme    # a new value on every caller route
    python3 scripts/function_keys.py revoke acme
    python3 scripts/function_keys.py list
    python3 scripts/function_keys.py migrate acme   # an older caller host key -> per-function
    python3 scripts/function_keys.py sync           # azd's postdeploy hook (azure.yaml)

``sync`` gives every caller route the ``caller-*`` keys the first caller route has (a route
added by a release — say ``/cancel`` — opens for existing callers too, with the same value).
Before this model, callers were given *host* keys named ``caller-<name>`` (they open every
route): ``list`` and ``sync`` name any that are left, ``migrate`` turns one into the per-function
key with the same value (the caller notices nothing) and deletes the host key, and ``revoke``
deletes both kinds. The app is ``$AZURE_FUNCTION_APP_NAME`` in ``$AZURE_RESOURCE_GROUP`` (azd
sets both from the deployment's outputs), or ``-n`` and ``-g``. Values go to standard output
only for ``add`` and ``rotate``; nothing is logged.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "caller-"


def caller_functions(access: Path = ROOT / "access.json") -> list[str]:
    groups: dict[str, list[str]] = json.loads(access.read_text(encoding="utf-8"))["perFunctionKeys"]
    return list(groups["caller"])


class Az:
    """``az functionapp function keys`` (per-function) and ``az functionapp keys`` (host) for
    one app."""

    FUNCTION = ("function", "keys")
    HOST = ("keys",)

    def __init__(self, group: str, app: str) -> None:
        self.app = ["-g", group, "-n", app]

    def _run(self, kind: tuple[str, ...], action: str, *options: str) -> Any:
        command = ["az", "functionapp", *kind, action, *self.app, *options, "-o", "json"]
        result = subprocess.run(  # noqa: S603 (az, with our own arguments)
            command, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"az functionapp {' '.join(kind)} {action} failed: {result.stderr}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def keys(self, function: str) -> dict[str, str]:
        listed = self._run(self.FUNCTION, "list", "--function-name", function)
        return {str(k): str(v) for k, v in (listed or {}).items()}

    def set(self, function: str, name: str, value: str) -> None:
        self._run(
            self.FUNCTION,
            "set",
            *("--function-name", function, "--key-name", name, "--key-value", value),
        )

    def delete(self, function: str, name: str) -> None:
        self._run(self.FUNCTION, "delete", "--function-name", function, "--key-name", name)

    def host_keys(self) -> dict[str, str]:
        """The host keys of type functionKeys (name -> value)."""
        listed = self._run(self.HOST, "list") or {}
        return {str(k): str(v) for k, v in (listed.get("functionKeys") or {}).items()}

    def delete_host_key(self, name: str) -> None:
        self._run(self.HOST, "delete", "--key-type", "functionKeys", "--key-name", name)


def _name(caller: str) -> str:
    if not caller or not all(c.isalnum() or c in "-_" for c in caller):
        raise SystemExit("a caller's name is letters, digits, '-' and '_'")
    return PREFIX + caller


def add(az: Az, functions: list[str], caller: str, *, replace: bool = False) -> str:
    name = _name(caller)
    existing = az.keys(functions[0])
    if name in existing and not replace:
        raise SystemExit(f"{name} exists already: rotate or revoke it")
    if name not in existing and replace:
        raise SystemExit(f"{name} does not exist: add it")
    value = secrets.token_urlsafe(40)
    for function in functions:
        az.set(function, name, value)
    return value


def revoke(az: Az, functions: list[str], caller: str) -> None:
    name = _name(caller)
    for function in functions:
        if name in az.keys(function):
            az.delete(function, name)
    if name in az.host_keys():
        az.delete_host_key(name)


def migrate(az: Az, functions: list[str], caller: str) -> None:
    """The host key ``caller-<name>`` (older model: it opens every route) becomes the
    per-function key of the same value on the caller routes; then the host key goes."""
    name = _name(caller)
    value = az.host_keys().get(name)
    if value is None:
        raise SystemExit(f"no host key {name} to migrate")
    existing = az.keys(functions[0]).get(name)
    if existing is not None and existing != value:
        raise SystemExit(
            f"{name} exists as a per-function key with another value: revoke one of the two"
        )
    for function in functions:
        az.set(function, name, value)
    az.delete_host_key(name)


def host_key_warning(az: Az) -> str | None:
    """A line naming caller host keys left from the older model, if any."""
    left = sorted(k for k in az.host_keys() if k.startswith(PREFIX))
    if not left:
        return None
    return (
        f"host keys {', '.join(left)} open every route, the operators' too: "
        "run 'migrate <name>' for each"
    )


def sync(az: Az, functions: list[str]) -> list[str]:
    """Every caller route gets the first one's caller keys; returns what was set where."""
    reference = {k: v for k, v in az.keys(functions[0]).items() if k.startswith(PREFIX)}
    changed = []
    for function in functions[1:]:
        present = az.keys(function)
        for name, value in reference.items():
            if present.get(name) != value:
                az.set(function, name, value)
                changed.append(f"{function}:{name}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--resource-group", default=os.environ.get("AZURE_RESOURCE_GROUP"))
    parser.add_argument("-n", "--name", default=os.environ.get("AZURE_FUNCTION_APP_NAME"))
    parser.add_argument("action", choices=["add", "rotate", "revoke", "migrate", "list", "sync"])
    parser.add_argument("caller", nargs="?")
    args = parser.parse_args(argv)
    if not args.resource_group or not args.name:
        parser.error("the app: -g and -n, or AZURE_RESOURCE_GROUP and AZURE_FUNCTION_APP_NAME")
    if args.action in ("add", "rotate", "revoke", "migrate") and not args.caller:
        parser.error(f"{args.action} needs the caller's name")
    az, functions = Az(args.resource_group, args.name), caller_functions()
    if args.action in ("add", "rotate"):
        print(add(az, functions, args.caller, replace=args.action == "rotate"))
    elif args.action == "revoke":
        revoke(az, functions, args.caller)
    elif args.action == "migrate":
        migrate(az, functions, args.caller)
    elif args.action == "list":
        names = sorted(k for k in az.keys(functions[0]) if k.startswith(PREFIX))
        print("\n".join(names))
    else:
        changed = sync(az, functions)
        print(f"caller keys in sync on {len(functions)} routes ({len(changed)} set)")
    if args.action in ("list", "sync") and (warning := host_key_warning(az)):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
