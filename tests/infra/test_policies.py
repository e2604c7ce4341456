"""Policy tests over infra/*.bicep, read through the tree-sitter-bicep parse tree.

Every check runs on the real templates (no violation allowed) and on a copy of them with one
deliberate regression (the check must report it), so no check passes vacuously.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sendmail.settings import Settings
from tests.infra import policies
from tests.infra.bicep import (
    Project,
    call_arguments,
    call_name,
    evaluate,
    parse,
    syntax_errors,
    text,
)
from tests.infra.conftest import INFRA

Check = Callable[[Project], list[str]]


def check_settings_names(project: Project) -> list[str]:
    return policies.check_settings_names(project, Settings.env_names())


CHECKS: dict[str, Check] = {
    "syntax": policies.check_syntax,
    "conservative_syntax": policies.check_conservative_syntax,
    "target_scope": policies.check_target_scope,
    "required_resources": policies.check_required_resources,
    "api_versions": policies.check_api_versions,
    "flex_plan": policies.check_flex_plan,
    "function_app": policies.check_function_app,
    "flex_rejected": policies.check_flex_rejected,
    "settings_names": check_settings_names,
    "identity_storage_settings": policies.check_identity_storage_settings,
    "secret_settings": policies.check_secret_settings,
    "storage": policies.check_storage,
    "no_keys": policies.check_no_keys,
    "key_vault": policies.check_key_vault,
    "outputs": policies.check_outputs,
    "roles": policies.check_roles,
    "monitoring": policies.check_monitoring,
    "network": policies.check_network,
    "location": policies.check_location,
    "naming_and_tags": policies.check_naming_and_tags,
}


def mutated(*edits: tuple[str, str, str]) -> Project:
    """infra/ with each (file, old, new) edit applied to the first occurrence of ``old``."""
    sources = {
        path.relative_to(INFRA).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(INFRA.rglob("*.bicep"))
    }
    for file, old, new in edits:
        assert old in sources[file], f"{old!r} not in {file}: update the test with the Bicep"
        sources[file] = sources[file].replace(old, new, 1)
    return Project.from_sources(sources)


# ------------------------------------------------------------------------------------------------
# The real templates comply
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bicep_file", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.name)
def test_every_bicep_file_parses_without_error_nodes(bicep_file: Path, infra: Project) -> None:
    tree = parse(bicep_file.read_bytes())
    assert syntax_errors(tree) == []
    assert tree.root_node.named_child_count > 0


def test_main_and_modules_are_all_there(infra: Project) -> None:
    assert {str(p) for p in infra.files} >= {
        "main.bicep",
        "modules/functionapp.bicep",
        "modules/keyvault.bicep",
        "modules/monitoring.bicep",
        "modules/roles.bicep",
        "modules/storage.bicep",
    }
    for bicep_file in infra.files.values():
        for module in bicep_file.modules:
            assert infra.module_target(bicep_file, module) is not None, module.source


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_infra_complies(name: str, infra: Project) -> None:
    assert CHECKS[name](infra) == []


def test_app_settings_are_read_from_the_bicep(infra: Project) -> None:
    settings = policies.app_settings(infra)
    # the optional configuration set is included only when given, but it is a known name
    assert "SENDMAIL_SES_CONFIGURATION_SET" in settings
    assert set(policies.IMPORTANT_SETTINGS) <= set(settings)
    assert set(policies.IDENTITY_STORAGE_SETTINGS) <= set(settings)


def test_app_setting_defaults_match_the_code(infra: Project) -> None:
    """main.bicep's defaults are the code's defaults, so a bare deployment behaves like local."""
    main = infra.main
    settings = infra.resolve_object(main, main.vars["sendMailSettings"].value)
    fields = Settings.model_fields
    compared = 0
    for name, (bicep_file, value) in settings.items():
        node = value
        if value.type == "call_expression" and call_name(value) == "string":
            node = call_arguments(value)[0]
        param = bicep_file.params.get(text(node))
        if param is None or param.default is None or name not in fields:
            continue
        default = infra.resolve_value(bicep_file, param.default)
        expected = fields[name].default
        if isinstance(expected, list):
            expected = ",".join(expected)
        elif expected is None:
            expected = ""
        assert str(default) == str(expected).removesuffix(".0"), name
        compared += 1
    assert compared >= 12


def test_role_assignments_cover_the_five_roles_at_their_scopes(infra: Project) -> None:
    found = {(role, scope) for role, scope, _, _ in policies.role_assignments(infra)}
    assert set(policies.ROLE_SCOPES.items()) <= found


# ------------------------------------------------------------------------------------------------
# Each check catches a regression
# ------------------------------------------------------------------------------------------------

STORAGE = "modules/storage.bicep"
APP = "modules/functionapp.bicep"
VAULT = "modules/keyvault.bicep"
ROLES = "modules/roles.bicep"
MONITORING = "modules/monitoring.bicep"
MAIN = "main.bicep"

REGRESSIONS: list[tuple[str, str, tuple[tuple[str, str, str], ...], str]] = [
    # (check, id, edits, expected fragment of a violation)
    (
        "syntax",
        "unclosed-object",
        ((MAIN, "  name: names.identity\n", "  name: {\n"),),
        "syntax error",
    ),
    (
        "conservative_syntax",
        "lambda",
        (
            (
                MAIN,
                "var tags =",
                "var nonEmpty = filter(allowedIpRanges, r => !empty(r))\nvar tags =",
            ),
        ),
        "lambda_expression",
    ),
    (
        "conservative_syntax",
        "registry-module",
        (
            (
                MAIN,
                "module monitoring 'modules/monitoring.bicep'",
                "module monitoring 'br/public:avm/res/insights/component:0.6.0'",
            ),
        ),
        "registry module",
    ),
    (
        "conservative_syntax",
        "user-defined-type",
        ((MAIN, "var tags =", "type cidr = string\nvar tags ="),),
        "type_declaration",
    ),
    (
        "conservative_syntax",
        "safe-dereference",
        ((MAIN, "name: names.identity", "name: names.?identity"),),
        "operator .?",
    ),
    (
        "target_scope",
        "subscription",
        ((MAIN, "targetScope = 'resourceGroup'", "targetScope = 'subscription'"),),
        "subscription",
    ),
    (
        "required_resources",
        "identity-only-referenced",
        (
            (
                MAIN,
                "userAssignedIdentities@2024-11-30' = {",
                "userAssignedIdentities@2024-11-30' existing = {",
            ),
        ),
        "userAssignedIdentities resource is deployed",
    ),
    (
        "api_versions",
        "old-web",
        ((APP, "Microsoft.Web/sites@2025-03-01", "Microsoft.Web/sites@2022-03-01"),),
        "older than 2025-03-01",
    ),
    (
        "api_versions",
        "preview",
        ((STORAGE, "storageAccounts@2025-06-01' = {", "storageAccounts@2025-08-01-preview' = {"),),
        "preview version",
    ),
    ("flex_plan", "consumption-y1", ((APP, "name: 'FC1'", "name: 'Y1'"),), "FC1"),
    ("flex_plan", "windows", ((APP, "reserved: true", "reserved: false"),), "not Linux"),
    ("function_app", "http-allowed", ((APP, "httpsOnly: true", "httpsOnly: false"),), "httpsOnly"),
    (
        "function_app",
        "tls-1.0",
        ((APP, "minTlsVersion: '1.2'", "minTlsVersion: '1.0'"),),
        "minTlsVersion",
    ),
    (
        "function_app",
        "ftp-on",
        ((APP, "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'"),),
        "FTP must be off",
    ),
    (
        "function_app",
        "no-durable-always-ready",
        ((APP, "name: 'durable'", "name: 'http'"),),
        "'durable' group",
    ),
    (
        "function_app",
        "literal-memory",
        ((APP, "instanceMemoryMB: instanceMemoryMB", "instanceMemoryMB: 2048"),),
        "instanceMemoryMB is not a parameter",
    ),
    (
        "function_app",
        "literal-max-instances-in-main",
        ((MAIN, "maximumInstanceCount: maximumInstanceCount", "maximumInstanceCount: 100"),),
        "maximumInstanceCount is not a parameter",
    ),
    (
        "function_app",
        "deploy-with-connection-string",
        ((APP, "type: 'UserAssignedIdentity'", "type: 'StorageAccountConnectionString'"),),
        "authenticated by the identity",
    ),
    (
        "function_app",
        "system-identity",
        ((APP, "type: 'UserAssigned'\n", "type: 'SystemAssigned'\n"),),
        "UserAssigned",
    ),
    (
        "function_app",
        "python-3.9",
        ((MAIN, "param pythonVersion string = '3.11'", "param pythonVersion string = '3.12'"),),
        "3.11",
    ),
    (
        "flex_rejected",
        "linuxFxVersion",
        (
            (
                APP,
                "ftpsState: 'Disabled'",
                "ftpsState: 'Disabled'\n      linuxFxVersion: 'Python|3.11'",
            ),
        ),
        "linuxFxVersion",
    ),
    (
        "storage",
        "shared-key",
        ((STORAGE, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),),
        "allowSharedKeyAccess",
    ),
    (
        "storage",
        "public-blob",
        ((STORAGE, "allowBlobPublicAccess: false", "allowBlobPublicAccess: true"),),
        "allowBlobPublicAccess",
    ),
    (
        "storage",
        "tls-1.0",
        ((STORAGE, "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'"),),
        "minimumTlsVersion",
    ),
    (
        "storage",
        "public-container",
        ((STORAGE, "publicAccess: 'None'", "publicAccess: 'Blob'"),),
        "publicAccess",
    ),
    (
        "no_keys",
        "listKeys",
        (
            (
                STORAGE,
                "output storageAccountId",
                "output blobKey string = storage.listKeys().keys[0].value\noutput storageAccountId",
            ),
        ),
        "listKeys()",
    ),
    (
        "no_keys",
        "connection-string",
        (
            (
                APP,
                "AzureWebJobsStorage__credential: 'managedidentity'",
                "AzureWebJobsStorage__credential: 'managedidentity'\n"
                "  OTHER: 'DefaultEndpointsProtocol=https;AccountKey=abc'",
            ),
        ),
        "key material",
    ),
    (
        "key_vault",
        "no-purge-protection",
        ((VAULT, "enablePurgeProtection: true", "enablePurgeProtection: false"),),
        "enablePurgeProtection",
    ),
    (
        "key_vault",
        "access-policies",
        ((VAULT, "enableRbacAuthorization: true", "enableRbacAuthorization: false"),),
        "enableRbacAuthorization",
    ),
    (
        "key_vault",
        "literal-secret",
        ((VAULT, "    value: sealingKey\n", "    value: 'not-a-secret'\n"),),
        "not a @secure() parameter",
    ),
    (
        "key_vault",
        "secure-default",
        ((MAIN, "param sealingKey string = ''", "param sealingKey string = 'abc'"),),
        "has a default value",
    ),
    (
        "key_vault",
        "unconditional-secret",
        ((VAULT, "secrets@2025-05-01' = if (!empty(sealingKey)) {", "secrets@2025-05-01' = {"),),
        "every deployment",
    ),
    (
        "outputs",
        "secure-param",
        (
            (
                MAIN,
                "output AZURE_LOCATION",
                "output leaked string = awsSecretAccessKey\noutput AZURE_LOCATION",
            ),
        ),
        "carries a @secure() value",
    ),
    (
        "outputs",
        "secure-via-var",
        (
            (
                MAIN,
                "output AZURE_LOCATION",
                "var wrapped = 'k=${sealingKey}'\n"
                "output wrapped2 string = wrapped\noutput AZURE_LOCATION",
            ),
        ),
        "carries a @secure() value",
    ),
    (
        "outputs",
        "secure-via-module",
        (
            (VAULT, "output keyVaultId", "output vaultSeed string = sealingKey\noutput keyVaultId"),
            (
                MAIN,
                "output AZURE_LOCATION",
                "output seed string = keyVault.outputs.vaultSeed\noutput AZURE_LOCATION",
            ),
        ),
        "main.bicep",
    ),
    (
        "outputs",
        "connection-string",
        (
            (
                MONITORING,
                "output workspaceId",
                "output ai string = applicationInsights.properties.ConnectionString\n"
                "output workspaceId",
            ),
        ),
        "exposes ConnectionString",
    ),
    (
        "outputs",
        "secret-name",
        (
            (
                MAIN,
                "output AZURE_LOCATION",
                "output STORAGE_KEY string = 'x'\noutput AZURE_LOCATION",
            ),
        ),
        "looks like a secret",
    ),
    (
        "roles",
        "wrong-table-role",
        (
            (
                ROLES,
                "storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
                "storageTableDataContributor: '00000000-0000-0000-0000-000000000000'",
            ),
        ),
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    ),
    (
        "roles",
        "metrics-on-wrong-scope",
        ((ROLES, "  scope: applicationInsights\n", "  scope: vault\n"),),
        "3913510d-42f4-4e42-8a64-420c390055eb",
    ),
    (
        "roles",
        "user-principal-type",
        ((ROLES, "principalType: 'ServicePrincipal'", "principalType: 'User'"),),
        "principalType",
    ),
    (
        "monitoring",
        "local-auth",
        ((MONITORING, "DisableLocalAuth: true", "DisableLocalAuth: false"),),
        "local auth",
    ),
    (
        "monitoring",
        "classic",
        ((MONITORING, "    WorkspaceResourceId: workspace.id\n", ""),),
        "workspace-based",
    ),
    (
        "network",
        "always-allow",
        (
            (
                APP,
                "ipSecurityRestrictionsDefaultAction: restrictCallers ? 'Deny' : 'Allow'",
                "ipSecurityRestrictionsDefaultAction: 'Allow'",
            ),
        ),
        "Deny when allowedIpRanges",
    ),
    (
        "network",
        "inverted",
        (
            (
                APP,
                "ipSecurityRestrictionsDefaultAction: restrictCallers ? 'Deny' : 'Allow'",
                "ipSecurityRestrictionsDefaultAction: restrictCallers ? 'Allow' : 'Deny'",
            ),
        ),
        "Deny when allowedIpRanges",
    ),
    (
        "network",
        "rules-ignored",
        ((APP, "ipSecurityRestrictions: ipRestrictions", "ipSecurityRestrictions: []"),),
        "built from allowedIpRanges",
    ),
    (
        "network",
        "no-vnet",
        (
            (
                APP,
                "virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : "
                "virtualNetworkSubnetId",
                "virtualNetworkSubnetId: null",
            ),
        ),
        "subnet parameter",
    ),
    (
        "location",
        "literal-default",
        (
            (
                MAIN,
                "param location string = resourceGroup().location",
                "param location string = 'koreacentral'",
            ),
        ),
        "resourceGroup().location",
    ),
    (
        "location",
        "literal-resource",
        (
            (
                MAIN,
                "  location: location\n  tags: tags\n}",
                "  location: 'koreacentral'\n  tags: tags\n}",
            ),
        ),
        "literal location",
    ),
    (
        "naming_and_tags",
        "no-unique-string",
        ((MAIN, "toLower(uniqueString(resourceGroup().id, environmentName, appName))", "'prod1'"),),
        "uniqueString",
    ),
    (
        "naming_and_tags",
        "untagged",
        ((MAIN, "  location: location\n  tags: tags\n}", "  location: location\n}"),),
        "has no tags",
    ),
    (
        "naming_and_tags",
        "fixed-name",
        ((MONITORING, "  name: workspaceName\n", "  name: 'log-sendmail'\n"),),
        "fixed name",
    ),
]


@pytest.mark.parametrize(
    ("check", "edits", "expected"),
    [
        pytest.param(check, edits, expected, id=f"{check}-{case}")
        for check, case, edits, expected in REGRESSIONS
    ],
)
def test_check_reports_regression(
    check: str, edits: tuple[tuple[str, str, str], ...], expected: str
) -> None:
    violations = CHECKS[check](mutated(*edits))
    assert any(expected in v for v in violations), violations


#: Checks whose regressions are the app-settings tests below.
SETTINGS_CHECKS = {"settings_names", "identity_storage_settings", "secret_settings"}


def test_every_check_has_a_regression_case() -> None:
    assert {check for check, *_ in REGRESSIONS} | SETTINGS_CHECKS == set(CHECKS)


# -- app settings -------------------------------------------------------------------------------

SETTING_ANCHOR = (APP, "AzureWebJobsStorage__credential: 'managedidentity'")


def with_setting(line: str, anchor: tuple[str, str] = SETTING_ANCHOR) -> Project:
    file, old = anchor
    return mutated((file, old, f"{old}\n  {line}"))


@pytest.mark.parametrize(
    "name",
    [
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "AzureWebJobsStorage",
    ],
)
def test_flex_rejected_setting_is_reported(name: str) -> None:
    violations = policies.check_flex_rejected(with_setting(f"{name}: 'x'"))
    assert any(f"app setting {name} (Flex rejects it)" in v for v in violations), violations


def test_setting_added_in_main_is_seen_through_the_module_call() -> None:
    project = with_setting("WEBSITE_RUN_FROM_PACKAGE: '1'", (MAIN, "AWS_REGION: awsRegion"))
    assert any("WEBSITE_RUN_FROM_PACKAGE" in v for v in policies.check_flex_rejected(project))


def test_misspelled_sendmail_setting_is_reported() -> None:
    project = with_setting("SENDMAIL_SES_BATCHSIZE: '100'", (MAIN, "AWS_REGION: awsRegion"))
    violations = check_settings_names(project)
    assert any(
        "SENDMAIL_SES_BATCHSIZE is not read by sendmail.settings.Settings" in v for v in violations
    )


def test_unknown_aws_setting_is_reported() -> None:
    violations = check_settings_names(with_setting("AWS_SESSION_TOKEN: 'x'"))
    assert any("AWS_SESSION_TOKEN is not read" in v for v in violations), violations


def test_missing_important_setting_is_reported() -> None:
    project = mutated((MAIN, "  SENDMAIL_SES_BATCH_SIZE: string(sesBatchSize)\n", ""))
    assert "app setting SENDMAIL_SES_BATCH_SIZE is missing" in check_settings_names(project)


def test_local_only_smtp_override_is_reported() -> None:
    violations = check_settings_names(with_setting("SENDMAIL_SMTP_HOST: 'smtp.example.com'"))
    assert any("SENDMAIL_SMTP_HOST is for local runs only" in v for v in violations), violations


def test_missing_identity_storage_setting_is_reported() -> None:
    project = mutated((APP, "  AzureWebJobsStorage__tableServiceUri: tableEndpoint\n", ""))
    assert "app setting AzureWebJobsStorage__tableServiceUri is missing" in (
        policies.check_identity_storage_settings(project)
    )


def test_storage_credential_other_than_managed_identity_is_reported() -> None:
    project = mutated(
        (
            APP,
            "AzureWebJobsStorage__credential: 'managedidentity'",
            "AzureWebJobsStorage__credential: 'x'",
        )
    )
    assert any(
        "not 'managedidentity'" in v for v in policies.check_identity_storage_settings(project)
    )


def test_app_insights_key_auth_is_reported() -> None:
    project = mutated((APP, "'Authorization=AAD;ClientId=${identityClientId}'", "''"))
    assert any("Authorization=AAD" in v for v in policies.check_identity_storage_settings(project))


@pytest.mark.parametrize("name", policies.SECRET_SETTINGS)
def test_secret_setting_must_be_a_key_vault_reference(name: str) -> None:
    start = f"  {name}: '@Microsoft.KeyVault("
    source = (INFRA / APP).read_text(encoding="utf-8")
    line = next(line for line in source.splitlines() if line.startswith(start))
    project = mutated((APP, line, f"  {name}: 'plain-text-value'"))
    violations = policies.check_secret_settings(project)
    assert any(f"app setting {name} is not a Key Vault reference" in v for v in violations), (
        violations
    )


def test_unresolvable_app_settings_fail_instead_of_passing() -> None:
    project = mutated(
        (
            APP,
            "union(platformSettings, keyVaultReferences, sendMailSettings, optionalSettings)",
            "json(loadTextContent('settings.json'))",
        )
    )
    violations = check_settings_names(project)
    assert violations
    assert "cannot resolve" in violations[0]


def test_the_python_thread_pool_matches_the_activity_concurrency(infra: Project) -> None:
    """Sync activities run on the worker's thread pool: host.json and the Bicep must agree."""
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    activities = host["extensions"]["durableTask"]["maxConcurrentActivityFunctions"]
    _, node = policies.app_settings(infra)["PYTHON_THREADPOOL_THREAD_COUNT"]
    assert evaluate(node) == str(activities)
