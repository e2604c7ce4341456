"""Policy tests over infra/*.bicep, read through the tree-sitter-bicep parse tree.

Every check runs on the real templates (no violation allowed) and on a copy of them with one
deliberate regression (the check must report it), so no check passes vacuously. The Flex
Consumption rules and their sources are in flex.py; the compiler's deploy-time-constant rule
(BCP120/177/178) in deploytime.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from sendmail.platform.settings import Settings
from tests.infra import deploytime, flex, policies, public
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
    "scale_bounds": flex.check_scale_bounds,
    "always_ready": flex.check_always_ready,
    "one_app_per_plan": flex.check_one_app_per_plan,
    "deploy_time_constants": deploytime.check_deploy_time_constants,
    "loop_placement": deploytime.check_loop_placement,
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
    "env_urls": policies.check_env_urls,
    "public_app": public.check_public_app,
    "public_roles": public.check_public_roles,
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
PUBLIC_ROLES = "modules/publicroles.bicep"

REGRESSIONS: list[tuple[str, str, tuple[tuple[str, str, str], ...], str]] = [
    # (check, id, edits, expected fragment of a violation)
    (
        "env_urls",
        "host-in-a-description",
        (
            (
                APP,
                "@description('Key Vault URI",
                "@description('https://<vault>.vault.azure.net/: Key Vault URI",
            ),
        ),
        "vault.azure.net",
    ),
    (
        "env_urls",
        "hard-coded-endpoint",
        ((MAIN, "var tags =", "var blob = 'https://x.blob.core.windows.net/'\nvar tags ="),),
        "core.windows.net",
    ),
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
            (
                MAIN,
                "userAssignedIdentities@2024-11-30' = if (hasPublicApp) {",
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
    # Flex Consumption plan deprecations (flex.py [deprecations])
    (
        "flex_rejected",
        "ftpsState-back",
        ((APP, "http20Enabled: true", "http20Enabled: true\n      ftpsState: 'Disabled'"),),
        "site property ftpsState (deprecated on Flex Consumption)",
    ),
    (
        "flex_rejected",
        "linuxFxVersion",
        ((APP, "http20Enabled: true", "http20Enabled: true\n      linuxFxVersion: 'Python|3.11'"),),
        "site property linuxFxVersion",
    ),
    (
        "flex_rejected",
        "site-level-vnetRouteAllEnabled",
        ((APP, "httpsOnly: true", "httpsOnly: true\n    vnetRouteAllEnabled: true"),),
        "site property vnetRouteAllEnabled",
    ),
    # flex-consumption-plan#considerations ("Scale: The lowest maximum scale is currently 40")
    (
        "scale_bounds",
        "main-accepts-below-40",
        (
            (
                MAIN,
                "@minValue(40)\n@maxValue(1000)\nparam maximumInstanceCount",
                "@minValue(1)\n@maxValue(1000)\nparam maximumInstanceCount",
            ),
        ),
        "main.bicep:",
    ),
    (
        "scale_bounds",
        "module-accepts-above-1000",
        (
            (
                APP,
                "@minValue(40)\n@maxValue(1000)\nparam maximumInstanceCount",
                "@minValue(40)\n@maxValue(2000)\nparam maximumInstanceCount",
            ),
        ),
        "@maxValue(2000) lets maximumInstanceCount above 1000",
    ),
    (
        "scale_bounds",
        "literal-count-below-40",
        ((APP, "maximumInstanceCount: maximumInstanceCount", "maximumInstanceCount: 20"),),
        "maximumInstanceCount 20 is outside 40..1000",
    ),
    # flex-consumption-plan#instance-sizes
    (
        "scale_bounds",
        "unknown-memory-size",
        ((MAIN, "@allowed([\n  512\n  2048", "@allowed([\n  512\n  1024\n  2048"),),
        "must be a subset of Flex Consumption's sizes",
    ),
    # flex-consumption-plan#always-ready-instances ("No less than two ... zone redundancy")
    (
        "always_ready",
        "one-instance-when-zone-redundant",
        (
            (
                APP,
                "zoneRedundant ? max(durableAlwaysReadyInstances, 2) : durableAlwaysReadyInstances",
                "durableAlwaysReadyInstances",
            ),
        ),
        "has 1 instance(s) on a zone-redundant plan (Flex requires at least 2) when "
        "durableAlwaysReadyInstances=1, functions=all, zoneRedundant=True",
    ),
    (
        "always_ready",
        "unknown-group",
        ((APP, "name: 'durable'", "name: 'orchestrators'"),),
        "alwaysReady name 'orchestrators' is not http, blob, durable or function:<name>",
    ),
    (
        "always_ready",
        "uncomputable",
        ((APP, "instanceCount: durableAlwaysReady", "instanceCount: length(plan.properties)"),),
        "alwaysReady cannot be checked",
    ),
    # flex-consumption-plan#considerations ("Only one app is allowed per Flex Consumption plan",
    # "Deployment slots aren't currently supported")
    (
        "one_app_per_plan",
        "second-app",
        (
            (
                APP,
                "// Publishing goes through Microsoft Entra ID",
                "resource second 'Microsoft.Web/sites@2025-03-01' = {\n"
                "  name: '${functionAppName}-2'\n  location: location\n"
                "  properties: {\n    serverFarmId: plan.id\n  }\n}\n"
                "// Publishing goes through Microsoft Entra ID",
            ),
        ),
        "hosts exactly one app (found 2)",
    ),
    (
        "one_app_per_plan",
        "slot",
        (
            (
                APP,
                "// Publishing goes through Microsoft Entra ID",
                "resource staging 'Microsoft.Web/sites/slots@2025-03-01' = {\n  parent: functionApp"
                "\n  name: 'staging'\n  location: location\n}\n"
                "// Publishing goes through Microsoft Entra ID",
            ),
        ),
        "deployment slots are not supported",
    ),
    # Azure/bicep DeployTimeConstant*Visitor.cs: BCP178 (for), BCP177 (if), BCP120 (properties)
    (
        "deploy_time_constants",
        "settings-loop-over-runtime-value",  # the loop this project shipped (issue 12)
        (
            (
                APP,
                "  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization",
                "  APPLICATIONINSIGHTS_CONNECTION_STRING: "
                "applicationInsights.properties.ConnectionString\n"
                "  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization",
            ),
        ),
        "(through startSettings -> platformSettings)",
    ),
    (
        "loop_placement",
        "property-loop-inside-a-function-call",
        (
            (
                APP,
                "appSettings: concat(startSettingList, [",
                "appSettings: concat([for s in items(startSettings): {\n"
                "        name: s.key\n        value: s.value\n      }], [",
            ),
        ),
        "BCP138: a for-expression inside arguments",
    ),
    (
        "deploy_time_constants",
        "loop-over-resource-property",
        (
            (
                STORAGE,
                "output storageAccountId",
                "var endpointList = [for e in items(storage.properties.primaryEndpoints): e.value]"
                "\noutput endpoints array = endpointList\noutput storageAccountId",
            ),
        ),
        "storage.properties is a run-time property of a resource",
    ),
    (
        "deploy_time_constants",
        "var-loop-body-holds-whole-resource",
        (
            (
                STORAGE,
                "output storageAccountId",
                "var copies = [for i in range(0, 2): storage]\noutput n array = copies"
                "\noutput storageAccountId",
            ),
        ),
        "the whole of storage is only known at run time",
    ),
    (
        "deploy_time_constants",
        "loop-over-module-output",
        (
            (
                MAIN,
                "output AZURE_LOCATION",
                "output ranges array = [for r in items(keyVault.outputs): r.key]\n"
                "output AZURE_LOCATION",
            ),
        ),
        "keyVault.outputs is a run-time value of a module",
    ),
    (
        "deploy_time_constants",
        "loop-over-reference",
        (
            (
                ROLES,
                "resource blobDataOwner",
                "var refs = [for k in items(reference(storage.id)): k.key]\n"
                "output refKeys array = refs\nresource blobDataOwner",
            ),
        ),
        "reference() is evaluated at run time",
    ),
    (
        "deploy_time_constants",
        "if-on-module-output",
        (
            (
                MAIN,
                "module roles 'modules/roles.bicep' = {",
                "module roles 'modules/roles.bicep' = if (!empty(keyVault.outputs.keyVaultUri)) {",
            ),
        ),
        "BCP177: the if-condition",
    ),
    (
        "deploy_time_constants",
        "name-from-module-output",
        ((MAIN, "  name: names.identity\n", "  name: storage.outputs.storageAccountName\n"),),
        "BCP120: the resource property 'name'",
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
    # The public app (public.py): open, public functions only, its own identity and package
    (
        "public_app",
        "public-app-behind-the-allow-list",
        ((MAIN, "    allowedIpRanges: []\n", "    allowedIpRanges: allowedIpRanges\n"),),
        "the public app (publicApp) has an IP restriction (default action 'Deny'",
    ),
    (
        "public_app",
        "public-app-without-an-allow-list",
        (
            (
                MAIN,
                "module publicApp 'modules/functionapp.bicep' = if (hasPublicApp) {",
                "module publicApp 'modules/functionapp.bicep' = {",
            ),
        ),
        "the public app (publicApp) is deployed when allowedIpRanges is empty",
    ),
    (
        "public_app",
        "main-app-open",
        ((MAIN, "    allowedIpRanges: allowedIpRanges\n", "    allowedIpRanges: []\n"),),
        "the main app (functionApp) with allowedIpRanges=['203.0.113.0/24']: default action "
        "'Allow'",
    ),
    (
        "public_app",
        "public-app-gets-the-sending-secrets",
        (
            (
                APP,
                "var sendingSecretReferences = runsDurable ? {",
                "var sendingSecretReferences = {",
            ),
            (APP, "sealingKey})'\n} : {}", "sealingKey})'\n}"),
        ),
        "publicApp: Key Vault references ['AWS_ACCESS_KEY_ID'",
    ),
    (
        "public_app",
        "unsubscribe-links-to-the-restricted-app",
        (
            (
                MAIN,
                "publicBaseUrl: hasPublicApp ? 'https://${publicApp.outputs.defaultHostName}' : ''",
                "publicBaseUrl: ''",
            ),
        ),
        "the main app's SENDMAIL_PUBLIC_BASE_URL with allowedIpRanges=['203.0.113.0/24']",
    ),
    (
        "public_app",
        "shared-identity",
        (
            (MAIN, "identityId: publicIdentity.id", "identityId: identity.id"),
            (
                MAIN,
                "identityClientId: publicIdentity.properties.clientId",
                "identityClientId: identity.properties.clientId",
            ),
        ),
        "the public app shares the main app's identity",
    ),
    (
        "public_app",
        "shared-package-container",
        (
            (
                MAIN,
                "deploymentContainerName: names.publicDeploymentContainer",
                "deploymentContainerName: storage.outputs.deploymentContainerName",
            ),
        ),
        "the public app shares the main app's package container",
    ),
    (
        "public_app",
        "public-app-kept-ready",
        (
            (APP, "!runsDurable ? 0 : ", ""),
            (MAIN, "    durableAlwaysReadyInstances: 0\n", "    durableAlwaysReadyInstances: 1\n"),
        ),
        "the public app (publicApp) keeps always-ready instances",
    ),
    (
        "public_roles",
        "task-hub-queues",
        (
            (
                PUBLIC_ROLES,
                "storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
                "storageTableDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'",
            ),
        ),
        "holds Storage Queue Data Contributor",
    ),
    (
        "public_roles",
        "no-vault-role",
        ((PUBLIC_ROLES, "  scope: vault\n", "  scope: storage\n"),),
        "the public app's identity holds",
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
    "name", sorted(flex.FLEX_DEPRECATED_SETTINGS | flex.PROJECT_REJECTED_SETTINGS)
)
def test_flex_deprecated_setting_is_reported(name: str) -> None:
    """Every app setting on Microsoft's Flex Consumption deprecation list (flex.py)."""
    violations = policies.check_flex_rejected(with_setting(f"{name}: 'x'"))
    expected = f"app setting {name} (deprecated on Flex Consumption)"
    assert any(expected in v for v in violations), violations


@pytest.mark.parametrize(
    "name",
    sorted(flex.FLEX_DEPRECATED_SITE_PROPERTIES | flex.PROJECT_REJECTED_SITE_PROPERTIES),
)
@pytest.mark.parametrize("where", ["siteConfig", "properties"])
def test_flex_deprecated_site_property_is_reported(name: str, where: str) -> None:
    """Every site property on Microsoft's Flex Consumption deprecation list (flex.py)."""
    anchor = "      http20Enabled: true\n" if where == "siteConfig" else "    httpsOnly: true\n"
    indent = "      " if where == "siteConfig" else "    "
    project = mutated((APP, anchor, f"{anchor}{indent}{name}: 'x'\n"))
    violations = policies.check_flex_rejected(project)
    expected = f"site property {name} (deprecated on Flex Consumption)"
    assert any(expected in v for v in violations), violations


def test_deprecated_property_in_a_web_config_resource_is_reported() -> None:
    project = mutated(
        (
            APP,
            "// Publishing goes through Microsoft Entra ID",
            "resource web 'Microsoft.Web/sites/config@2025-03-01' = {\n  parent: functionApp\n"
            "  name: 'web'\n  properties: {\n    alwaysOn: false\n  }\n}\n"
            "// Publishing goes through Microsoft Entra ID",
        )
    )
    violations = policies.check_flex_rejected(project)
    assert any("site property alwaysOn" in v for v in violations), violations


def test_setting_added_in_main_is_seen_through_the_module_call() -> None:
    project = with_setting("WEBSITE_RUN_FROM_PACKAGE: '1'", (MAIN, "AWS_REGION: awsRegion"))
    assert any("WEBSITE_RUN_FROM_PACKAGE" in v for v in policies.check_flex_rejected(project))


def test_misspelled_sendmail_setting_is_reported() -> None:
    project = with_setting("SENDMAIL_SES_BATCHSIZE: '100'", (MAIN, "AWS_REGION: awsRegion"))
    violations = check_settings_names(project)
    assert any(
        "SENDMAIL_SES_BATCHSIZE is not read by sendmail.platform.settings.Settings" in v
        for v in violations
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


def test_the_development_sns_trust_is_reported() -> None:
    """devhost's SNS certificate origin must never be trusted by a deployment."""
    setting = "SENDMAIL_SNS_DEV_TRUSTED_ORIGIN: 'http://127.0.0.1:8080'"
    violations = check_settings_names(with_setting(setting))
    assert any("SENDMAIL_SNS_DEV_TRUSTED_ORIGIN is for local runs only" in v for v in violations)


@pytest.mark.parametrize("name", flex.DURABLE_IDENTITY_SETTINGS)
def test_missing_identity_storage_setting_is_reported(name: str) -> None:
    """Durable's task hub needs blob, queue AND table; __accountName avoids a start-up race."""
    source = (INFRA / APP).read_text(encoding="utf-8")
    line = next(line for line in source.splitlines() if line.startswith(f"  {name}: "))
    project = mutated((APP, f"{line}\n", ""))
    assert f"app setting {name} is missing" in policies.check_identity_storage_settings(project)


def test_managed_identity_resource_id_is_reported() -> None:
    """Durable Functions does not support __managedIdentityResourceId (use __clientId)."""
    project = with_setting("AzureWebJobsStorage__managedIdentityResourceId: identityClientId")
    violations = policies.check_identity_storage_settings(project)
    assert any("does not support it" in v for v in violations), violations


def test_service_uri_from_the_wrong_endpoint_is_reported() -> None:
    project = mutated(
        (
            APP,
            "AzureWebJobsStorage__queueServiceUri: queueEndpoint",
            "AzureWebJobsStorage__queueServiceUri: tableEndpoint",
        )
    )
    violations = policies.check_identity_storage_settings(project)
    assert any("queueServiceUri does not come from" in v for v in violations), violations


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
            "union(platformSettings, keyVaultReferences, sendMailSettings, optionalSettings, "
            "roleSettings)",
            "json(loadTextContent('settings.json'))",
        )
    )
    violations = check_settings_names(project)
    assert violations
    assert "cannot resolve" in violations[0]


def test_the_python_thread_pool_holds_every_activity_and_orchestrator_at_once(
    infra: Project,
) -> None:
    """Sync activities and sync orchestrator episodes share the worker's one thread pool
    (PYTHON_THREADPOOL_THREAD_COUNT): sized to both of host.json's limits, long SES batches
    cannot starve the episodes that schedule the next ones (devhost models the shared pool:
    tests/devhost/test_shim.py)."""
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    durable = host["extensions"]["durableTask"]
    wanted = (
        durable["maxConcurrentActivityFunctions"] + durable["maxConcurrentOrchestratorFunctions"]
    )
    _, node = policies.app_settings(infra)["PYTHON_THREADPOOL_THREAD_COUNT"]
    assert evaluate(node) == str(wanted)


def test_the_send_client_keeps_a_connection_for_every_call_a_worker_can_have_in_flight() -> None:
    """ACTIVITY_SLOTS batches per worker (host.json) x SENDMAIL_SES_MAX_CONCURRENCY calls each."""
    from sendmail.sending.ses import ACTIVITY_SLOTS, send_client_config

    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert host["extensions"]["durableTask"]["maxConcurrentActivityFunctions"] == ACTIVITY_SLOTS
    assert send_client_config(16).max_pool_connections == ACTIVITY_SLOTS * 16  # type: ignore[attr-defined]


def test_a_batch_hands_back_before_the_function_timeout(infra: Project) -> None:
    """An SES batch runs at most SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS, then returns what is
    left as pending; the host kills an activity at functionTimeout (host.json) — with margin for
    the calls in flight (connect + read timeout each) to finish. Checked for the default, the
    Bicep parameter's default and its @maxValue, and the setting's own ceiling."""
    from sendmail.sending.ses import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS

    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    hours, minutes, seconds = (int(p) for p in host["functionTimeout"].split(":"))
    timeout = hours * 3600 + minutes * 60 + seconds
    name = "SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS"
    _, node = policies.app_settings(infra)[name]
    assert text(node) == "string(sesBatchTimeBudgetSeconds)"
    param = infra.main.params["sesBatchTimeBudgetSeconds"]
    budgets = [
        evaluate(param.default),
        evaluate(param.decorators["maxValue"][0]),
        Settings().SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS,
        *(getattr(m, "le", 0) for m in Settings.model_fields[name].metadata),
    ]
    margin = CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS + 60
    assert all(isinstance(b, (int, float)) and b + margin < timeout for b in budgets), budgets


def test_the_probed_task_hub_is_the_one_host_json_runs(infra: Project) -> None:
    """The 429 for a saturated batch queue reads `{hub}-workitems`: the hub must be host.json's."""
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    hub = host["extensions"]["durableTask"]["hubName"]
    _, node = policies.app_settings(infra)["SENDMAIL_TASK_HUB"]
    assert evaluate(node) == hub == Settings().SENDMAIL_TASK_HUB


def test_the_send_lists_container_is_declared_private_in_the_host_storage(infra: Project) -> None:
    """The app keeps each send's list and content in ``sendmail-sends`` (sendmail/platform/
    blobs.py DEFAULT_CONTAINER) in the host's own account, through AzureWebJobsStorage's blob
    endpoint and the Storage Blob Data Owner role."""
    from sendmail.platform.blobs import DEFAULT_CONTAINER

    storage = infra.files[PurePosixPath(STORAGE)]
    container = storage.resource("sendsContainer")
    assert container is not None
    assert container.type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    name, access = container.get("name"), container.get("properties", "publicAccess")
    assert name is not None
    assert access is not None
    assert text(name).strip("'") == DEFAULT_CONTAINER
    assert text(access).strip("'") == "None"
    settings = policies.app_settings(infra)
    assert "AzureWebJobsStorage__blobServiceUri" in settings
