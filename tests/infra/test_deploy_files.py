"""main.bicepparam, azure.yaml, bicepconfig.json and scripts/validate-infra.

tree-sitter-bicep 1.1 has no grammar for .bicepparam files, so each ``param x = <expr>`` is
checked by parsing ``var x = <expr>`` (the same expression grammar) and matching it against
main.bicep's parameter declarations.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess

import pytest

from sendmail.platform.settings import Settings
from tests.infra import public
from tests.infra.bicep import (
    Expr,
    Param,
    Project,
    Value,
    call_arguments,
    call_name,
    compute,
    evaluate,
    load_source,
    syntax_errors,
    text,
)
from tests.infra.conftest import INFRA, REPO_ROOT

PARAM_LINE = re.compile(r"^param\s+(\w+)\s*=", re.MULTILINE)
CIDR_PARAMS = ("allowedIpRanges", "operatorIpRanges")


def read_bicepparam(source: str) -> tuple[str | None, dict[str, Value], list[str]]:
    """(using path, param values, syntax errors) of a .bicepparam file."""
    using = re.search(r"^using\s+'([^']+)'", source, re.MULTILINE)
    as_bicep = PARAM_LINE.sub(lambda m: f"var {m.group(1)} =", source)
    model = load_source(as_bicep, "main.bicepparam")
    values = {name: evaluate(var.value) for name, var in model.vars.items()}
    return (using.group(1) if using else None), values, syntax_errors(model.tree)


def bicepparam_problems(source: str, main: Project) -> list[str]:
    using, values, errors = read_bicepparam(source)
    problems = list(errors)
    if using != "./main.bicep":
        problems.append(f"using {using!r}, not './main.bicep'")
    params = main.main.params
    for name, value in values.items():
        param = params.get(name)
        if param is None:
            problems.append(f"{name} is not a parameter of main.bicep")
            continue
        problems += _value_problems(param, value)
    problems += [
        f"{name} has no default and is not set"
        for name, param in params.items()
        if param.default is None and name not in values
    ]
    return problems


def _environment_default(value: Value) -> Value:
    """The default of ``readEnvironmentVariable('NAME', default)``, what a bare shell deploys."""
    if isinstance(value, Expr) and call_name(value.node) == "readEnvironmentVariable":
        arguments = call_arguments(value.node)
        return evaluate(arguments[1]) if len(arguments) == 2 else None
    return value


def _value_problems(param: Param, value: Value) -> list[str]:
    problems = []
    if param.secure and not (
        isinstance(value, Expr) and call_name(value.node) == "readEnvironmentVariable"
    ):
        problems.append(f"{param.name} is @secure(): read it from the environment, never a literal")
    value = _environment_default(value)
    allowed = param.allowed()
    if allowed and not isinstance(value, Expr) and value not in allowed:
        problems.append(f"{param.name}={value!r} is not one of {allowed}")
    for decorator in ("minValue", "maxValue"):
        args = param.decorators.get(decorator)
        bound = evaluate(args[0]) if args else None
        if isinstance(value, int) and isinstance(bound, int):
            broken = value < bound if decorator == "minValue" else value > bound
            if broken:
                problems.append(f"{param.name}={value} breaks @{decorator}({bound})")
    if param.name in CIDR_PARAMS:
        if not isinstance(value, list):
            problems.append(f"{param.name} must be a literal list of CIDRs")
        else:
            for item in value:
                try:
                    ipaddress.ip_network(str(item), strict=True)
                except ValueError:
                    problems.append(
                        f"{param.name}: {item!r} is not a CIDR (use /32 for one address)"
                    )
                else:
                    if "/" not in str(item):
                        problems.append(f"{param.name}: {item!r} needs a prefix length (/32)")
    return problems


@pytest.fixture(scope="module")
def bicepparam_source() -> str:
    return (INFRA / "main.bicepparam").read_text(encoding="utf-8")


def test_bicepparam_is_valid_for_main(bicepparam_source: str, infra: Project) -> None:
    assert bicepparam_problems(bicepparam_source, infra) == []


def test_bicepparam_sets_the_app_settings_within_the_code_limits(
    bicepparam_source: str, infra: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production values pass sendmail.platform.settings.Settings' own validation."""
    _, values, _ = read_bicepparam(bicepparam_source)
    settings = infra.resolve_object(infra.main, infra.main.vars["sendMailSettings"].value)
    applied = 0
    for name, (_, node) in settings.items():
        source = text(node)
        param = re.sub(r"^string\((\w+)\)$", r"\1", source)
        if param in values and not isinstance(values[param], Expr):
            monkeypatch.setenv(name, str(values[param]))
            applied += 1
    assert applied >= 12
    parsed = Settings()
    assert values["sesBatchSize"] == parsed.SENDMAIL_SES_BATCH_SIZE
    assert [values["allowedSenders"]] == parsed.SENDMAIL_ALLOWED_SENDERS


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("param appName = 'sendmail'", "param appNam = 'sendmail'"), "appNam is not a parameter"),
        (
            ("param environmentName = ", "param environmentNameX = "),
            "environmentName has no default",
        ),
        (
            ("param allowedIpRanges = []", "param allowedIpRanges = [\n  '203.0.113.7'\n]"),
            "needs a prefix length",
        ),
        (
            ("param allowedIpRanges = []", "param allowedIpRanges = [\n  '203.0.113.0/33'\n]"),
            "is not a CIDR",
        ),
        (
            ("param allowedIpRanges = []", "param allowedIpRanges = [\n  '203.0.113.1/24'\n]"),
            "is not a CIDR",
        ),
        (
            (
                "param sealingKey = readEnvironmentVariable('SENDMAIL_SEALING_KEY_VALUE', '')",
                "param sealingKey = 'abc'",
            ),
            "read it from the environment",
        ),
        (("param instanceMemoryMB = 2048", "param instanceMemoryMB = 1024"), "is not one of"),
        (
            ("param maximumInstanceCount = 40", "param maximumInstanceCount = 20"),
            "maximumInstanceCount=20 breaks @minValue(40)",
        ),
        (
            (
                "readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'User')",
                "readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'user')",
            ),
            "operatorPrincipalType='user' is not one of",
        ),
        (("param sesBatchSize = 500", "param sesBatchSize = 6000"), "@maxValue"),
        (("using './main.bicep'", "using './other.bicep'"), "not './main.bicep'"),
        (("param appName = 'sendmail'", "param appName = {"), "syntax error"),
    ],
)
def test_bicepparam_problem_is_reported(
    bicepparam_source: str, infra: Project, edit: tuple[str, str], expected: str
) -> None:
    old, new = edit
    assert old in bicepparam_source
    problems = bicepparam_problems(bicepparam_source.replace(old, new, 1), infra)
    assert any(expected in p for p in problems), problems


def test_operator_principal_type_follows_the_deployer(bicepparam_source: str) -> None:
    """A pipeline signed in as a service principal must not be assigned as a 'User'.

    ARM refuses a role assignment whose principalType does not match the principal
    (UnmatchedPrincipalType); azd pipelines set AZURE_PRINCIPAL_TYPE=ServicePrincipal.
    """
    _, values, _ = read_bicepparam(bicepparam_source)
    value = values["operatorPrincipalType"]
    assert isinstance(value, Expr)
    assert call_name(value.node) == "readEnvironmentVariable"
    assert [evaluate(a) for a in call_arguments(value.node)] == ["AZURE_PRINCIPAL_TYPE", "User"]
    documented = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "AZURE_PRINCIPAL_TYPE" in documented


def test_production_follows_the_durable_on_flex_recommendation(bicepparam_source: str) -> None:
    """One always-ready instance for the durable group (durable-functions-azure-storage-provider
    #flex-consumption-plan: "Set the always ready instance count for the durable group to 1")."""
    _, values, _ = read_bicepparam(bicepparam_source)
    count = values["durableAlwaysReadyInstances"]
    assert isinstance(count, int)
    assert count >= 1


def test_bicepparam_allows_real_cidrs(bicepparam_source: str, infra: Project) -> None:
    edited = bicepparam_source.replace(
        "param allowedIpRanges = []",
        "param allowedIpRanges = [\n  '203.0.113.0/24'\n  '198.51.100.7/32'\n]",
    )
    assert bicepparam_problems(edited, infra) == []


# -- azd, linter configuration, validation script -----------------------------------------------


def test_azure_yaml_deploys_the_root_as_a_python_function_app() -> None:
    import yaml  # type: ignore[import-untyped]

    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    api = config["services"]["api"]
    assert api == {"project": ".", "language": "python", "host": "function"}


@pytest.mark.parametrize("allowed", [[], public.CALLERS], ids=["open", "allow-list"])
def test_azd_deploys_the_public_app_exactly_when_the_bicep_made_one(
    infra: Project, allowed: list[str]
) -> None:
    """azd deploys a service only when its ``condition`` is true (azure-dev, pkg/project/
    service_config.go, ``IsEnabled``: 1, true, True, TRUE, yes...; azd 1.23.4 and later) and
    finds its app by the ``azd-service-name`` tag. main.bicep's output SENDMAIL_PUBLIC_APP
    lands in the azd environment after provisioning."""
    import yaml

    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    service = config["services"]["public"]
    assert service == {
        "project": ".",
        "language": "python",
        "host": "function",
        "condition": "${SENDMAIL_PUBLIC_APP}",
    }
    output = next(o for o in infra.main.outputs if o.name == "SENDMAIL_PUBLIC_APP")
    env = public.main_env(infra, allowedIpRanges=list[Value](allowed))
    assert compute(infra.main, output.value, env) == ("true" if allowed else "false")
    tagged = {
        public.site_tags(app).get("azd-service-name")
        for app in public.instances(infra, allowed)
        if app.deployed
    }
    assert tagged == ({"api", "public"} if allowed else {"api"})
    assert tagged <= set(config["services"])


def test_bicepconfig_turns_on_the_required_linter_rules() -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    rules = config["analyzers"]["core"]["rules"]
    assert config["analyzers"]["core"]["enabled"] is True
    for rule in (
        "no-hardcoded-location",
        "use-recent-api-versions",
        "outputs-should-not-contain-secrets",
        "secure-parameter-default",
        "secure-secrets-in-params",
        "secure-params-in-nested-deploy",
        "use-secure-value-for-secure-inputs",
    ):
        assert rules[rule]["level"] in {"warning", "error"}, rule


def test_validate_infra_script_is_executable_bash() -> None:
    script = REPO_ROOT / "scripts" / "validate-infra"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    body = script.read_text(encoding="utf-8")
    assert "--skip-download" in body
    assert "parsing_errors" in body
    assert "pytest -q -p no:cacheprovider tests/infra" in body  # `make infra` runs the policies


def test_operators_get_a_host_key_and_callers_none_from_the_bicep(infra: Project) -> None:
    """The key model (docs/deploy.md, section 6): the only key the Bicep creates is the
    operators' host key, from a secure parameter; callers' keys are per-function, set after
    deployment by azd's postdeploy hook (scripts/function_keys.py)."""
    import yaml

    app = next(f for path, f in infra.files.items() if str(path) == "modules/functionapp.bicep")
    keys = [r for r in app.resources if r.type.startswith("Microsoft.Web/sites/host/")]
    assert [r.type for r in keys] == ["Microsoft.Web/sites/host/functionKeys"]
    assert "'operators'" in text(keys[0].body)
    assert not [r for r in app.resources if r.type == "Microsoft.Web/sites/functions/keys"]
    source = (INFRA / "modules" / "functionapp.bicep").read_text(encoding="utf-8")
    assert "@secure()\n@description('Value of the operators' host key" in source.replace("\\'", "'")
    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert config["hooks"]["postdeploy"]["run"] == "python3 scripts/function_keys.py sync"


def test_the_deploy_guide_names_the_secrets_environment_variables(bicepparam_source: str) -> None:
    """Every secret main.bicepparam reads from the deployer's environment is named in
    docs/deploy.md ("Secrets", way A), under the name the file reads."""
    _, values, _ = read_bicepparam(bicepparam_source)
    documented = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    secure = {name for name, param in Project.load(INFRA).main.params.items() if param.secure}
    names = []
    for name in sorted(secure):
        value = values[name]
        assert isinstance(value, Expr), name
        variable = evaluate(call_arguments(value.node)[0])
        assert isinstance(variable, str), name
        names.append(variable)
    assert "SENDMAIL_UNSUBSCRIBE_KEYS_VALUE" in names
    assert [n for n in names if n not in documented] == []
