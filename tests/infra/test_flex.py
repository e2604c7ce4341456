"""Flex Consumption rules that are not in the Bicep (host.json), and the edges of the rule checks.

test_policies.py runs every check on infra/ and on one regression each; here: host.json against
the Durable-on-Flex guidance, the zone-redundancy arithmetic for every parameter value, and the
deploy-time-constant check on the cases the compiler accepts (so it does not cry wolf) and the
ones it refuses. Sources are listed in flex.py and deploytime.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.infra import flex
from tests.infra.bicep import Project, Value, compute, load_source
from tests.infra.conftest import REPO_ROOT
from tests.infra.deploytime import check_deploy_time_constants

APP = "modules/functionapp.bicep"


@pytest.fixture(scope="module")
def host() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    return loaded


# -- host.json -----------------------------------------------------------------------------------


def test_host_json_follows_the_flex_guidance(host: dict[str, Any]) -> None:
    assert flex.check_host_json(host) == []


def _with(host: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    edited = copy.deepcopy(host)
    node = edited
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return edited


POLLING = ("extensions", "durableTask", "storageProvider", "maxQueuePollingInterval")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (POLLING, None, "is not set (default 30 s"),
        (POLLING, "00:00:30", "is 30 s: Flex Consumption needs 10 s or less"),
        (POLLING, "00:01:00", "is 60 s"),
        (POLLING, "10", "is not a TimeSpan"),
        (POLLING, "00:00:00", "is 0 s"),
        (("extensionBundle", "version"), "[3.*, 4.0.0)", "needs [4.0.0, 5.0.0) or later"),
    ],
    ids=["unset", "default-30s", "one-minute", "not-a-timespan", "zero", "bundle-3"],
)
def test_host_json_regression_is_reported(
    host: dict[str, Any], path: tuple[str, ...], value: Any, expected: str
) -> None:
    problems = flex.check_host_json(_with(host, path, value))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("value", ["00:00:01", "00:00:05", "00:00:10", "00:00:02.500"])
def test_polling_intervals_within_ten_seconds_are_accepted(
    host: dict[str, Any], value: str
) -> None:
    assert flex.check_host_json(_with(host, POLLING, value)) == []


def test_architecture_says_why_the_polling_interval_is_short() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "maxQueuePollingInterval" in text


# -- zone redundancy: the always-ready count Flex gets, for every parameter value ----------------


@pytest.mark.parametrize(
    ("zone_redundant", "requested", "configured"),
    [
        (False, 0, []),
        (False, 1, [{"name": "durable", "instanceCount": 1}]),
        (False, 3, [{"name": "durable", "instanceCount": 3}]),
        (True, 0, [{"name": "durable", "instanceCount": 2}]),
        (True, 1, [{"name": "durable", "instanceCount": 2}]),
        (True, 2, [{"name": "durable", "instanceCount": 2}]),
        (True, 5, [{"name": "durable", "instanceCount": 5}]),
    ],
)
def test_zone_redundancy_raises_always_ready_to_two(
    infra: Project, zone_redundant: bool, requested: int, configured: list[dict[str, Any]]
) -> None:
    """Flex refuses fewer than two always-ready instances per group on a zone-redundant plan
    (flex-consumption-plan#always-ready-instances) and bills two there anyway: the template
    asks for at least two instead of failing the deployment. The public app (functions
    'public') runs no Durable function: no durable group at all."""
    module = next(f for p, f in infra.files.items() if str(p) == APP)
    app = next(r for r in module.resources if r.type == "Microsoft.Web/sites")
    node = app.get("properties", "functionAppConfig", "scaleAndConcurrency", "alwaysReady")
    assert node is not None
    env: dict[str, Value] = {
        "functions": "all",
        "zoneRedundant": zone_redundant,
        "durableAlwaysReadyInstances": requested,
    }
    assert compute(module, node, env) == configured
    assert compute(module, node, {**env, "functions": "public"}) == []


# -- the deploy-time-constant rule: what the compiler accepts is not reported ---------------------

ACCEPTED = {
    "loop over a parameter, run-time values in a resource's loop body": """
param ranges array
resource vault 'Microsoft.KeyVault/vaults@2025-05-01' = {
  name: 'kv'
  location: resourceGroup().location
  properties: {
    networkAcls: {
      ipRules: [for r in ranges: {
        value: '${r}-${vault.properties.vaultUri}'
      }]
    }
  }
}
""",
    "loop over a variable built from parameters and resource ids": """
param names object
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: 'st'
}
var settings = union(names, {
  account: st.name
  id: st.id
})
var pairs = [for s in items(settings): '${s.key}=${s.value}']
output p array = pairs
""",
    "run-time values passed into a module as parameters": """
resource ai 'Microsoft.Insights/components@2020-02-02' existing = {
  name: 'ai'
}
module app 'app.bicep' = {
  name: 'app'
  params: {
    connection: ai.properties.ConnectionString
  }
}
""",
    "condition on parameters; scope set to a resource": """
param enabled bool
resource vault 'Microsoft.KeyVault/vaults@2025-05-01' existing = {
  name: 'kv'
}
resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (enabled) {
  name: 'audit'
  scope: vault
}
""",
    "a loop inside a resource property may use run-time values in its body": """
param n int
resource ai 'Microsoft.Insights/components@2020-02-02' existing = {
  name: 'ai'
}
resource web 'Microsoft.Web/sites/config@2025-03-01' = {
  name: 'site/appsettings'
  properties: {
    list: [for i in range(0, n): ai.properties.ConnectionString]
  }
}
""",
}

REFUSED = {
    "the loop this project shipped: a variable chain to an existing resource's property": (
        """
resource ai 'Microsoft.Insights/components@2020-02-02' existing = {
  name: 'ai'
}
var platform = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: ai.properties.ConnectionString
}
var all = union(platform, {
  A: 'b'
})
resource web 'Microsoft.Web/sites@2025-03-01' = {
  name: 'site'
  location: resourceGroup().location
  properties: {
    siteConfig: {
      appSettings: [for s in items(all): {
        name: s.key
        value: s.value
      }]
    }
  }
}
""",
        "BCP178: the for-expression '[for s in items(all)",
        "(through all -> platform)",
    ),
    "a variable's loop body is checked too": (
        """
param n int
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: 'st'
}
var blobs = [for i in range(0, n): st.properties.primaryEndpoints.blob]
output b array = blobs
""",
        "BCP178",
        "st.properties is a run-time property",
    ),
    "a property read through a string index": (
        """
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: 'st'
}
output e array = [for x in items(st['properties']): x.key]
""",
        "BCP178",
        "st.properties is a run-time property",
    ),
    "listKeys() in a condition": (
        """
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: 'st'
}
resource q 'Microsoft.Storage/storageAccounts/queueServices@2025-06-01' = if (empty(st.listKeys())){
  name: 'st/default'
}
""",
        "BCP177",
        "listKeys() is evaluated at run time",
    ),
    "a location from a resource's properties": (
        """
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: 'st'
}
resource id 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: 'id'
  location: st.properties.primaryLocation
}
""",
        "BCP120: the resource property 'location'",
        "st.properties is a run-time property",
    ),
}


@pytest.mark.parametrize("source", ACCEPTED.values(), ids=list(ACCEPTED))
def test_deploy_time_check_accepts_what_the_compiler_accepts(source: str) -> None:
    project = Project(files={load_source(source).path: load_source(source)})
    assert check_deploy_time_constants(project) == []


@pytest.mark.parametrize(("source", "code", "detail"), REFUSED.values(), ids=list(REFUSED))
def test_deploy_time_check_refuses_what_the_compiler_refuses(
    source: str, code: str, detail: str
) -> None:
    bicep_file = load_source(source)
    violations = check_deploy_time_constants(Project(files={bicep_file.path: bicep_file}))
    assert any(code in v and detail in v for v in violations), violations
