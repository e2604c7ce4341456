"""Which key opens which route (access.json): every function-level route is placed once, the
operators' routes are never a caller's, and scripts/function_keys.py keeps callers' keys on
exactly the caller routes (driven through a stand-in ``az``: Azure cannot be reached here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACCESS = json.loads((ROOT / "access.json").read_text(encoding="utf-8"))
SCRIPT = ROOT / "scripts" / "function_keys.py"
HOST_KEYS = "(host keys)"  # where the stand-in az keeps host keys


def levels(app_functions: dict[str, Any]) -> dict[str, str]:
    found = {}
    for name, function in app_functions.items():
        trigger = function.get_trigger()
        if getattr(trigger, "type", None) == "httpTrigger":
            level = trigger.auth_level if trigger.auth_level is not None else "function"
            found[name] = str(getattr(level, "value", level)).lower()
    return found


def test_every_function_level_route_is_placed_exactly_once(app_functions: dict[str, Any]) -> None:
    placed = [*ACCESS["hostKeysOnly"]]
    for functions in ACCESS["perFunctionKeys"].values():
        placed += functions
    routes = levels(app_functions)
    keyed = sorted(name for name, level in routes.items() if level != "anonymous")
    assert sorted(placed) == keyed  # each once; a new route must be placed (or it is unkeyed)
    assert "admin" not in routes.values()  # the master key is never needed, never handed out


#: The routes that answer without a key, each for a reason: liveness probes, the API's own
#: documentation, and the one-click unsubscribe links mail clients and recipients follow (RFC
#: 8058: no key can be in a link mailed to the world; the token is the authority).
PUBLIC_ROUTES = {
    "health": "health",
    "openapi_document": "v1/openapi.json",
    "docs": "v1/docs/{*path}",
    "v1_swagger_ui": "swagger-ui/index.html",
    "unsubscribe_page": "v1/unsubscribe/{token}",
    "unsubscribe": "v1/unsubscribe/{token}",
}


def test_a_route_without_a_key_is_one_of_the_public_routes(app_functions: dict[str, Any]) -> None:
    """A route made anonymous by mistake (a copied decorator) opens to the world: every
    anonymous route must be on the list above, with its route."""
    anonymous = {
        name: app_functions[name].get_trigger().route
        for name, level in levels(app_functions).items()
        if level == "anonymous"
    }
    assert anonymous == PUBLIC_ROUTES


def test_a_callers_key_opens_every_route_about_its_sends(app_functions: dict[str, Any]) -> None:
    """Sending, reading what became of a send — its status, each recipient's outcome (the
    recipients route, which the status route links to) and its SES events — and controlling it:
    pause, resume, cancel."""
    callers = set(ACCESS["perFunctionKeys"]["caller"])
    assert callers == {
        "aws_send",
        "user_send",
        "email_status",
        "email_recipients",
        "email_events",
        "email_pause",
        "email_resume",
        "email_cancel",
    }
    routes = {name: f.get_trigger().route for name, f in app_functions.items() if name in callers}
    assert routes["email_recipients"] == "v1/emails/{id}/recipients"
    assert routes["email_cancel"] == "v1/emails/{id}/cancel"
    assert levels(app_functions)["email_recipients"] == "function"
    assert levels(app_functions)["email_cancel"] == "function"


def test_no_caller_key_opens_an_operator_route() -> None:
    callers = set(ACCESS["perFunctionKeys"]["caller"])
    assert {"suppression_get", "suppression_delete"} <= set(ACCESS["hostKeysOnly"])
    assert not callers & set(ACCESS["hostKeysOnly"])
    assert ACCESS["perFunctionKeys"]["sns"] == ["ses_events"]  # SNS's key opens only its route


FAKE_AZ = r"""#!/usr/bin/env python3
import json, os, sys
store = os.environ["FAKE_AZ_STORE"]
keys = json.load(open(store)) if os.path.exists(store) else {}
args = sys.argv[1:]
host = args[:2] == ["functionapp", "keys"]
assert host or args[:3] == ["functionapp", "function", "keys"], args
action, rest = (args[2], args[3:]) if host else (args[3], args[4:])
opt = {rest[i]: rest[i + 1] for i in range(0, len(rest) - 1, 2) if rest[i].startswith("-")}
assert (opt["-g"], opt["-n"]) == ("rg", "app"), opt
if host and action != "list":
    assert opt["--key-type"] == "functionKeys", opt
mine = keys.setdefault("(host keys)" if host else opt["--function-name"], {})
if action == "list":
    print(json.dumps({"functionKeys": mine, "masterKey": "m"} if host else mine))
elif action == "set":
    mine[opt["--key-name"]] = opt["--key-value"]
    print(json.dumps({"name": opt["--key-name"]}))
elif action == "delete":
    del mine[opt["--key-name"]]
json.dump(keys, open(store, "w"))
"""


@pytest.fixture
def az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "az"
    fake.write_text(FAKE_AZ)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_STORE": str(tmp_path / "keys.json"),
        "AZURE_RESOURCE_GROUP": "rg",
        "AZURE_FUNCTION_APP_NAME": "app",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per-function keys by function (functions without keys left out)."""
    keys: dict[str, dict[str, str]] = json.loads(Path(env["FAKE_AZ_STORE"]).read_text())
    return {f: k for f, k in keys.items() if f != HOST_KEYS and k}


def host_keys(env: dict[str, str]) -> dict[str, str]:
    keys: dict[str, dict[str, str]] = json.loads(Path(env["FAKE_AZ_STORE"]).read_text())
    return keys.get(HOST_KEYS, {})


def test_a_callers_key_is_one_value_on_every_caller_route_and_nowhere_else(
    az: dict[str, str],
) -> None:
    added = run(az, "add", "acme")
    assert added.returncode == 0, added.stderr
    value = added.stdout.strip()
    callers = ACCESS["perFunctionKeys"]["caller"]
    assert {f: k for f, k in stored(az).items() if k} == {
        f: {"caller-acme": value} for f in callers
    }

    assert run(az, "add", "acme").returncode != 0  # exists: rotate or revoke
    rotated = run(az, "rotate", "acme").stdout.strip()
    assert rotated != value
    assert {k["caller-acme"] for k in stored(az).values()} == {rotated}
    assert run(az, "list").stdout.split() == ["caller-acme"]

    assert run(az, "revoke", "acme").returncode == 0
    assert stored(az) == {}


def test_sync_opens_a_new_caller_route_for_existing_callers(az: dict[str, str]) -> None:
    """A release adds a caller route (say /cancel): azd's postdeploy hook gives it every
    existing caller's key, with the same value, so callers keep one key."""
    value = run(az, "add", "acme").stdout.strip()
    keys = stored(az)
    del keys[ACCESS["perFunctionKeys"]["caller"][-1]]  # a route that did not exist before
    Path(az["FAKE_AZ_STORE"]).write_text(json.dumps(keys))

    synced = run(az, "sync")

    assert synced.returncode == 0, synced.stderr
    assert "(1 set)" in synced.stdout
    assert stored(az)[ACCESS["perFunctionKeys"]["caller"][-1]] == {"caller-acme": value}


def test_a_caller_host_key_of_the_older_model_is_named_and_migrated(
    az: dict[str, str],
) -> None:
    """Callers used to get host keys caller-<name>, which open every route. list and sync name
    them; migrate makes the same value a per-function key on the caller routes (the caller
    notices nothing) and deletes the host key."""
    Path(az["FAKE_AZ_STORE"]).write_text(json.dumps({HOST_KEYS: {"caller-old": "old-value"}}))
    listed = run(az, "list")
    assert "caller-old" in listed.stderr
    assert "open every route" in listed.stderr

    assert run(az, "migrate", "old").returncode == 0

    callers = ACCESS["perFunctionKeys"]["caller"]
    assert stored(az) == {f: {"caller-old": "old-value"} for f in callers}
    assert host_keys(az) == {}
    assert run(az, "sync").stderr == ""

    Path(az["FAKE_AZ_STORE"]).write_text(json.dumps({HOST_KEYS: {"caller-gone": "v"}}))
    assert run(az, "revoke", "gone").returncode == 0
    assert host_keys(az) == {}


def test_a_bad_caller_name_is_refused(az: dict[str, str]) -> None:
    assert run(az, "add", "acme; rm -rf /").returncode != 0


def test_migrate_refuses_to_overwrite_another_per_function_key(az: dict[str, str]) -> None:
    callers = ACCESS["perFunctionKeys"]["caller"]
    Path(az["FAKE_AZ_STORE"]).write_text(
        json.dumps({HOST_KEYS: {"caller-x": "old"}, **{f: {"caller-x": "newer"} for f in callers}})
    )
    refused = run(az, "migrate", "x")
    assert refused.returncode != 0
    assert "another value" in refused.stderr
    assert stored(az) == {f: {"caller-x": "newer"} for f in callers}  # untouched
