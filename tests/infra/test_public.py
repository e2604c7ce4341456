"""The public app's edges that the checks in public.py rely on (test_policies.py runs the checks
on infra/ and on one regression each): the evaluation of module calls, and names that keep the
two apps' Functions hosts apart in the storage account they share."""

from __future__ import annotations

import pytest

from tests.infra import public
from tests.infra.bicep import Expr, Project, Unresolved, Value, compute, load_source


def test_loops_items_and_run_time_values_are_computed() -> None:
    source = """
param ranges array
param clientId string
var rules = [for (cidr, i) in ranges: {
  name: 'allow-${i}'
  ipAddress: cidr
}]
var settings = union({
  B: string(3)
  A: 'id=${clientId}'
}, {
  C: string(true)
})
var listed = [for s in items(settings): s.key]
"""
    bicep = load_source(source)
    env: dict[str, Value] = {"ranges": ["203.0.113.0/24", "198.51.100.7/32"]}
    assert compute(bicep, bicep.vars["rules"].value, env) == [
        {"name": "allow-0", "ipAddress": "203.0.113.0/24"},
        {"name": "allow-1", "ipAddress": "198.51.100.7/32"},
    ]
    with pytest.raises(Unresolved):
        compute(bicep, bicep.vars["settings"].value, env)  # clientId has no value
    settings = compute(bicep, bicep.vars["settings"].value, env, symbolic=True)
    assert settings == {"A": "id=${clientId}", "B": "3", "C": "True"}
    assert compute(bicep, bicep.vars["listed"].value, env, symbolic=True) == ["A", "B", "C"]


@pytest.mark.parametrize(
    "expression",
    ["clientId == 'x' ? 1 : 2", "empty(clientId) ? 1 : 2", "!empty(clientId)"],
)
def test_a_run_time_value_never_decides(expression: str) -> None:
    """Comparing an Expr would be False, not unknown: a check would pass on a guess."""
    bicep = load_source(f"param clientId string\nvar decided = {expression}\n")
    env: dict[str, Value] = {"clientId": Expr(bicep.params["clientId"].node)}
    with pytest.raises(Unresolved):
        compute(bicep, bicep.vars["decided"].value, env, symbolic=True)


def test_the_two_apps_have_distinct_host_ids(infra: Project) -> None:
    """Both Functions hosts keep their keys and locks in the same storage account, under their
    host id: the app name, lower-cased, cut to 32 characters (a collision stops the host,
    HostIdCollision). Checked with the longest appName main.bicep accepts."""
    main = infra.main
    longest = main.params["appName"].decorators["maxLength"][0]
    length = int(longest.text or b"0")
    env: dict[str, Value] = {
        "appName": "a" * length,
        "resourceToken": "t" * 13,  # uniqueString(): 13 characters
    }
    names = compute(main, main.vars["names"].value, env, symbolic=True)
    assert isinstance(names, dict)
    main_name, public_name = str(names["functionApp"]), str(names["publicFunctionApp"])

    def host_id(name: str) -> str:
        return name.lower()[:32].rstrip("-")

    assert host_id(main_name) != host_id(public_name)
    assert max(len(main_name), len(public_name), len(str(names["publicPlan"]))) <= 60


def test_the_public_app_is_evaluated_for_both_allow_lists(infra: Project) -> None:
    open_apps = {i.functions: i.deployed for i in public.instances(infra, [])}
    listed_apps = {i.functions: i.deployed for i in public.instances(infra, public.CALLERS)}
    assert open_apps == {"all": True, "public": False}
    assert listed_apps == {"all": True, "public": True}
