"""Policy checks over the Bicep parse tree (see bicep.py).

Each check takes a :class:`Project` (and sometimes extra facts) and returns the list of
violations as readable strings: empty means compliant. The tests run every check on
``infra/`` and on small non-compliant snippets, so each check is shown to be able to fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tree_sitter import Node

from tests.infra import flex
from tests.infra.bicep import (
    BicepFile,
    Expr,
    Project,
    Resource,
    Unresolved,
    call_arguments,
    call_name,
    evaluate,
    get,
    parse_api_version,
    secure_params,
    significant,
    string_template,
    syntax_errors,
    text,
    unwrap,
    walk,
)

# ------------------------------------------------------------------------------------------------
# Facts
# ------------------------------------------------------------------------------------------------

REQUIRED_RESOURCE_TYPES = (
    "Microsoft.Web/serverfarms",
    "Microsoft.Web/sites",
    "Microsoft.ManagedIdentity/userAssignedIdentities",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Authorization/roleAssignments",
    "Microsoft.OperationalInsights/workspaces",
    "Microsoft.Insights/components",
    "Microsoft.KeyVault/vaults",
)

#: The newest API version known to this project per resource type (GA unless the type has
#: none newer than a preview). A resource may use this version or a later one, never an
#: older one: bump the floor when Bicep's use-recent-api-versions asks for a newer version.
#: Fixed dates rather than "N days before today", so the tests do not rot with the clock.
API_VERSION_FLOORS = {
    "Microsoft.Web/serverfarms": "2025-03-01",
    "Microsoft.Web/sites": "2025-03-01",
    "Microsoft.Web/sites/config": "2025-03-01",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "2025-03-01",
    "Microsoft.Web/sites/host": "2025-03-01",
    "Microsoft.Web/sites/host/functionKeys": "2025-03-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2024-11-30",
    "Microsoft.Storage/storageAccounts": "2025-06-01",
    "Microsoft.Storage/storageAccounts/blobServices": "2025-06-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2025-06-01",
    "Microsoft.Storage/storageAccounts/queueServices": "2025-06-01",
    "Microsoft.Storage/storageAccounts/queueServices/queues": "2025-06-01",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.OperationalInsights/workspaces": "2025-07-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.Insights/diagnosticSettings": "2021-05-01",
    "Microsoft.Insights/actionGroups": "2023-01-01",
    "Microsoft.Insights/scheduledQueryRules": "2026-03-01",
    "Microsoft.Insights/workbooks": "2023-06-01",
    "Microsoft.KeyVault/vaults": "2025-05-01",
    "Microsoft.KeyVault/vaults/secrets": "2025-05-01",
}
#: Types whose newest version is a preview (no GA version newer than the floor exists).
PREVIEW_ALLOWED = {"Microsoft.Insights/diagnosticSettings"}
#: Types whose location is 'global' whatever the region (an action group's receivers are not
#: regional; Bicep's no-hardcoded-location rule allows 'global' too).
GLOBAL_LOCATION_TYPES = frozenset({"Microsoft.Insights/actionGroups"})

#: Built-in role definition ids and where the app identity needs them.
ROLE_SCOPES = {
    # Storage Blob Data Owner, Storage Queue Data Contributor, Storage Table Data Contributor
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Microsoft.Storage/storageAccounts",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Microsoft.Storage/storageAccounts",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Microsoft.Storage/storageAccounts",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Microsoft.Insights/components",  # Metrics Publisher
    "4633458b-17de-408a-b874-0445c86b69e6": "Microsoft.KeyVault/vaults",  # Key Vault Secrets User
}

#: Identity-based host storage (the Durable task hub and the send ledger): see flex.py for
#: where each setting is required.
IDENTITY_STORAGE_SETTINGS = flex.DURABLE_IDENTITY_SETTINGS

#: Read by boto3's credential chain, not by sendmail.platform.settings.Settings.
BOTO3_SETTINGS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
#: Secrets: must be Key Vault references, never values.
SECRET_SETTINGS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SENDMAIL_SEALING_KEY",
    "SENDMAIL_UNSUBSCRIBE_KEYS",
)
#: The settings an operator is expected to tune: they must be in the Bicep.
IMPORTANT_SETTINGS = (
    "SENDMAIL_ALLOWED_SENDERS",
    "SENDMAIL_ALLOWED_SENDER_DOMAINS",
    "AWS_REGION",
    "SENDMAIL_SES_BATCH_SIZE",
    "SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES",
    "SENDMAIL_SES_MAX_RECIPIENTS",
    "SENDMAIL_SMTP_CONNECTIONS",
    "SENDMAIL_SNS_TOPIC_ARNS",
    "SENDMAIL_SEALING_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SENDMAIL_UNSUBSCRIBE_KEYS",
    "SENDMAIL_PUBLIC_BASE_URL",
    "SENDMAIL_FUNCTIONS",
)
#: Local-run overrides: pointing production at another SMTP host or CA, or trusting SNS
#: certificates from anywhere but AWS, would be a hole.
LOCAL_ONLY_SETTINGS = frozenset(
    {
        "SENDMAIL_SMTP_HOST",
        "SENDMAIL_SMTP_PORT",
        "SENDMAIL_SMTP_TLS_MODE",
        "SENDMAIL_SMTP_CA_FILE",
        "SENDMAIL_SNS_DEV_TRUSTED_ORIGIN",
        "SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP",
    }
)

_SECRET_WORDS = frozenset({"secret", "secrets", "password", "pwd", "token", "sas", "credential"})
_KEY_MATERIAL = re.compile(r"AccountKey=|SharedAccessSignature|InstrumentationKey=", re.IGNORECASE)
_SECRET_FUNCTIONS = re.compile(r"^list[A-Z]\w*$")  # listKeys, listConnectionStrings, listSecrets...


def _where(bicep_file: BicepFile, node: Node) -> str:
    return f"{bicep_file.path}:{node.start_point[0] + 1}"


def _deployed(project: Project, rtype: str) -> list[tuple[BicepFile, Resource]]:
    return [(f, r) for f, r in project.resources() if r.type == rtype and not r.existing]


# ------------------------------------------------------------------------------------------------
# Syntax and inventory
# ------------------------------------------------------------------------------------------------


def check_syntax(project: Project) -> list[str]:
    return [
        f"{path}:{error}" for path, f in project.files.items() for error in syntax_errors(f.tree)
    ]


def check_required_resources(project: Project) -> list[str]:
    declared = {r.type for _, r in project.resources() if not r.existing}
    return [
        f"no {rtype} resource is deployed"
        for rtype in REQUIRED_RESOURCE_TYPES
        if rtype not in declared
    ]


def check_api_versions(project: Project) -> list[str]:
    problems = []
    for bicep_file, resource in project.resources():
        where = _where(bicep_file, resource.node)
        parsed = parse_api_version(resource.api_version)
        if parsed is None:
            problems.append(f"{where}: {resource.type} has no valid API version")
            continue
        date, preview = parsed
        floor = API_VERSION_FLOORS.get(resource.type)
        if floor is None:
            problems.append(f"{where}: {resource.type} has no known API version floor")
        elif date < floor:
            problems.append(
                f"{where}: {resource.type}@{resource.api_version} is older than {floor}"
            )
        if preview and resource.type not in PREVIEW_ALLOWED:
            problems.append(f"{where}: {resource.type}@{resource.api_version} is a preview version")
    return problems


def check_target_scope(project: Project) -> list[str]:
    scope = project.main.target_scope
    return (
        [] if scope in (None, "resourceGroup") else [f"targetScope is {scope!r}, not resourceGroup"]
    )


# ------------------------------------------------------------------------------------------------
# Hosting: Flex Consumption plan and the function app
# ------------------------------------------------------------------------------------------------


def check_flex_plan(project: Project) -> list[str]:
    plans = _deployed(project, "Microsoft.Web/serverfarms")
    if not plans:
        return ["no App Service plan"]
    problems = []
    for bicep_file, plan in plans:
        where = _where(bicep_file, plan.node)
        if evaluate(plan.get("sku", "name")) != "FC1":
            problems.append(f"{where}: plan sku.name is not FC1")
        if evaluate(plan.get("sku", "tier")) != "FlexConsumption":
            problems.append(f"{where}: plan sku.tier is not FlexConsumption")
        if evaluate(plan.get("properties", "reserved")) is not True:
            problems.append(f"{where}: plan is not Linux (properties.reserved must be true)")
    return problems


def _function_apps(project: Project) -> list[tuple[BicepFile, Resource]]:
    return _deployed(project, "Microsoft.Web/sites")


def _is_param(project: Project, bicep_file: BicepFile, node: Node | None) -> bool:
    """The value is a parameter (here or, through module calls, in main.bicep), not a literal."""
    if node is None:
        return False
    node = unwrap(node)
    if node.type != "identifier" or text(node) not in bicep_file.params:
        return False
    if bicep_file is project.main:
        return True
    origins = project.argument_for(bicep_file, text(node))
    return bool(origins) and all(_is_param(project, f, n) for f, n in origins)


def check_function_app(project: Project) -> list[str]:
    apps = _function_apps(project)
    if not apps:
        return ["no function app"]
    problems = []
    for bicep_file, app in apps:
        where = _where(bicep_file, app.node)
        kind = evaluate(app.get("kind"))
        if not (isinstance(kind, str) and "functionapp" in kind and "linux" in kind):
            problems.append(f"{where}: kind must be 'functionapp,linux', is {kind!r}")
        if evaluate(app.get("properties", "httpsOnly")) is not True:
            problems.append(f"{where}: httpsOnly is not true")
        if evaluate(app.get("properties", "siteConfig", "minTlsVersion")) != "1.2":
            problems.append(f"{where}: siteConfig.minTlsVersion is not '1.2'")
        if evaluate(app.get("identity", "type")) != "UserAssigned":
            problems.append(f"{where}: identity.type is not 'UserAssigned'")
        if app.get("properties", "keyVaultReferenceIdentity") is None:
            problems.append(f"{where}: keyVaultReferenceIdentity is not set")

        config = app.get("properties", "functionAppConfig")
        runtime = evaluate(get(config, "runtime", "name"))
        if runtime != "python":
            problems.append(f"{where}: functionAppConfig.runtime.name is {runtime!r}, not 'python'")
        version = get(config, "runtime", "version")
        if not _python_311_capable(project, bicep_file, version):
            problems.append(f"{where}: functionAppConfig.runtime.version does not default to 3.11")
        storage = get(config, "deployment", "storage")
        if evaluate(get(storage, "type")) != "blobContainer":
            problems.append(f"{where}: deployment storage is not a blobContainer")
        if evaluate(get(storage, "authentication", "type")) != "UserAssignedIdentity":
            problems.append(f"{where}: deployment storage is not authenticated by the identity")
        if get(storage, "authentication", "userAssignedIdentityResourceId") is None:
            problems.append(f"{where}: deployment storage names no userAssignedIdentityResourceId")
        scale = get(config, "scaleAndConcurrency")
        for key in ("instanceMemoryMB", "maximumInstanceCount"):
            if not _is_param(project, bicep_file, get(scale, key)):
                problems.append(f"{where}: scaleAndConcurrency.{key} is not a parameter")
        always_ready = get(scale, "alwaysReady")
        groups = {
            text(n)
            for n in (walk(always_ready) if always_ready is not None else [])
            if n.type == "string_content"
        }
        if "durable" not in groups:
            problems.append(f"{where}: no alwaysReady entry for the 'durable' group")
    return problems


def _python_311_capable(project: Project, bicep_file: BicepFile, node: Node | None) -> bool:
    if node is None:
        return False
    value = project.resolve_value(bicep_file, node)
    if value == "3.11":
        return True
    if isinstance(value, Expr) and unwrap(node).type == "identifier":
        # a parameter: follow it to main.bicep's default
        for origin, argument in project.argument_for(bicep_file, text(unwrap(node))):
            if _python_311_capable(project, origin, argument):
                return True
    return False


def check_flex_rejected(project: Project) -> list[str]:
    """No site property or app setting Flex Consumption deprecates (flex.py, [deprecations])."""
    try:
        settings = app_settings(project)
    except Unresolved as exc:
        return [str(exc)]
    return flex.check_deprecated(project, settings)


# ------------------------------------------------------------------------------------------------
# App settings
# ------------------------------------------------------------------------------------------------


def app_settings(project: Project) -> dict[str, tuple[BicepFile, Node]]:
    """Every app setting name the function app can get, with the node of its value."""
    settings: dict[str, tuple[BicepFile, Node]] = {}
    for bicep_file, app in _function_apps(project):
        listed = app.get("properties", "siteConfig", "appSettings")
        if listed is not None:
            settings.update(_settings_array(project, bicep_file, listed))
    for bicep_file, config in _deployed(project, "Microsoft.Web/sites/config"):
        if evaluate(config.get("name")) == "appsettings":
            props = config.get("properties")
            if props is not None:
                settings.update(project.resolve_object(bicep_file, props))
    return settings


def _settings_array(
    project: Project, bicep_file: BicepFile, node: Node
) -> dict[str, tuple[BicepFile, Node]]:
    node = unwrap(node)
    if node.type == "identifier" and text(node) in bicep_file.vars:
        return _settings_array(project, bicep_file, bicep_file.vars[text(node)].value)
    if node.type == "array":
        found = {}
        for item in node.named_children:
            if item.type == "comment":
                continue
            name = evaluate(get(item, "name"))
            value = get(item, "value")
            if not isinstance(name, str) or value is None:
                raise Unresolved(f"{_where(bicep_file, item)}: app setting without a literal name")
            found[name] = (bicep_file, value)
        return found
    if node.type == "for_statement":
        # [for setting in items(X): { name: setting.key, value: setting.value }]
        iterable = next(
            (
                c
                for c in node.named_children
                if c.type == "call_expression" and call_name(c) == "items"
            ),
            None,
        )
        body = node.child_by_field_name("body")
        if iterable is not None and body is not None:
            name_text = text(get(body, "name") or body)
            value_text = text(get(body, "value") or body)
            if name_text.endswith(".key") and value_text.endswith(".value"):
                return project.resolve_object(bicep_file, call_arguments(iterable)[0])
    if node.type == "call_expression" and call_name(node) in {"concat", "union"}:
        found = {}
        for argument in call_arguments(node):
            found.update(_settings_array(project, bicep_file, argument))
        return found
    raise Unresolved(
        f"{_where(bicep_file, node)}: cannot read app settings from {text(node)[:60]!r}"
    )


def check_settings_names(project: Project, env_names: Iterable[str]) -> list[str]:
    """SENDMAIL_*/AWS_* settings are ones the code reads; the important ones are present."""
    try:
        settings = app_settings(project)
    except Unresolved as exc:
        return [str(exc)]
    known = set(env_names) | BOTO3_SETTINGS
    problems = [
        f"{_where(f, n)}: app setting {name} is not read by sendmail.platform.settings.Settings"
        for name, (f, n) in sorted(settings.items())
        if name.startswith(("SENDMAIL_", "AWS_")) and name not in known
    ]
    problems += [
        f"app setting {name} is missing" for name in IMPORTANT_SETTINGS if name not in settings
    ]
    problems += [
        f"{_where(f, n)}: app setting {name} is for local runs only"
        for name, (f, n) in sorted(settings.items())
        if name in LOCAL_ONLY_SETTINGS
    ]
    return problems


def check_identity_storage_settings(project: Project) -> list[str]:
    """Host storage and telemetry through the identity only (flex.py, [durable-identity])."""
    try:
        settings = app_settings(project)
    except Unresolved as exc:
        return [str(exc)]
    problems = flex.check_durable_storage_identity(project, settings)
    if "AzureWebJobsStorage" in settings:
        problems.append("AzureWebJobsStorage (a connection string) is set")
    auth = settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    template = string_template(auth[1]) if auth else None
    if not (template and template.startswith("Authorization=AAD;ClientId=${")):
        problems.append(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING is not "
            "'Authorization=AAD;ClientId=<identity>'"
        )
    if "APPLICATIONINSIGHTS_CONNECTION_STRING" not in settings:
        problems.append("APPLICATIONINSIGHTS_CONNECTION_STRING is missing")
    return problems


def check_secret_settings(project: Project) -> list[str]:
    """Secrets reach the app only as Key Vault references."""
    try:
        settings = app_settings(project)
    except Unresolved as exc:
        return [str(exc)]
    problems = []
    for name in SECRET_SETTINGS:
        if name not in settings:
            continue
        template = string_template(settings[name][1]) or ""
        if not (template.startswith("@Microsoft.KeyVault(SecretUri=") and template.endswith(")")):
            problems.append(
                f"app setting {name} is not a Key Vault reference "
                "(@Microsoft.KeyVault(SecretUri=...))"
            )
    return problems


# ------------------------------------------------------------------------------------------------
# Storage, keys and secrets
# ------------------------------------------------------------------------------------------------


def check_storage(project: Project) -> list[str]:
    accounts = _deployed(project, "Microsoft.Storage/storageAccounts")
    if not accounts:
        return ["no storage account"]
    problems = []
    expected = {
        "allowSharedKeyAccess": False,
        "allowBlobPublicAccess": False,
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True,
    }
    for bicep_file, account in accounts:
        for key, want in expected.items():
            got = evaluate(account.get("properties", key))
            if got != want:
                problems.append(
                    f"{_where(bicep_file, account.node)}: storage {key} is {got!r}, not {want!r}"
                )
    for bicep_file, container in _deployed(
        project, "Microsoft.Storage/storageAccounts/blobServices/containers"
    ):
        if evaluate(container.get("properties", "publicAccess")) != "None":
            problems.append(
                f"{_where(bicep_file, container.node)}: container publicAccess is not 'None'"
            )
    return problems


def check_no_keys(project: Project) -> list[str]:
    """No list*() call (listKeys & co. put keys into the deployment) and no key material."""
    problems = []
    for bicep_file in project.files.values():
        for node in walk(bicep_file.root):
            if node.type == "call_expression" and _SECRET_FUNCTIONS.match(call_name(node)):
                problems.append(f"{_where(bicep_file, node)}: {call_name(node)}() exposes keys")
            elif node.type == "string_content" and _KEY_MATERIAL.search(text(node)):
                problems.append(f"{_where(bicep_file, node)}: key material in {text(node)[:40]!r}")
    return problems


def check_key_vault(project: Project) -> list[str]:
    vaults = _deployed(project, "Microsoft.KeyVault/vaults")
    if not vaults:
        return ["no Key Vault"]
    problems = []
    for bicep_file, vault in vaults:
        where = _where(bicep_file, vault.node)
        for key in ("enableRbacAuthorization", "enableSoftDelete", "enablePurgeProtection"):
            if evaluate(vault.get("properties", key)) is not True:
                problems.append(f"{where}: Key Vault {key} is not true")
        if vault.get("properties", "accessPolicies") is not None:
            problems.append(f"{where}: Key Vault uses access policies; RBAC only")
    for bicep_file, secret in _deployed(project, "Microsoft.KeyVault/vaults/secrets"):
        value = secret.get("properties", "value")
        secure = secure_params(bicep_file)
        if value is None or unwrap(value).type != "identifier" or text(unwrap(value)) not in secure:
            problems.append(
                f"{_where(bicep_file, secret.node)}: secret value is not a @secure() parameter"
            )
        elif secret.condition is None:
            problems.append(
                f"{_where(bicep_file, secret.node)}: secret is written on every deployment; "
                "make it conditional on its parameter so ops can set it afterwards"
            )
    for bicep_file in project.files.values():
        for name, param in bicep_file.params.items():
            if param.secure and param.default is not None and evaluate(param.default) != "":
                problems.append(
                    f"{_where(bicep_file, param.node)}: @secure() param {name} has a default value"
                )
    return problems


def check_outputs(project: Project) -> list[str]:
    """No output carries a @secure() value (directly, via vars, or via module outputs)."""
    problems = []
    for bicep_file in project.files.values():
        for output in bicep_file.outputs:
            where = _where(bicep_file, output.value)
            if _looks_secret(output.name):
                problems.append(f"{where}: output {output.name} looks like a secret")
            if output.type in {"secureString", "secureObject"} or "secure" in output.decorators:
                problems.append(f"{where}: output {output.name} is secure-typed")
            if _carries_secret(project, bicep_file, output.value, set()):
                problems.append(f"{where}: output {output.name} carries a @secure() value")
            for node in walk(output.value):
                if node.type == "property_identifier" and text(node).lower() in {
                    "connectionstring",
                    "instrumentationkey",
                    "primarykey",
                    "secondarykey",
                }:
                    problems.append(f"{where}: output {output.name} exposes {text(node)}")
    return problems


def _looks_secret(name: str) -> bool:
    """'storageKey', 'SES_SECRET', 'connectionString' yes; 'keyVaultUri' no."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)]
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if word in _SECRET_WORDS:
            return True
        if word in {"key", "keys"} and following != "vault":
            return True
        if word == "connection" and following == "string":
            return True
    return False


def _carries_secret(
    project: Project, bicep_file: BicepFile, node: Node, seen: set[tuple[str, str]]
) -> bool:
    secure = secure_params(bicep_file)
    for ref in walk(node):
        if ref.type == "identifier":
            name = text(ref)
            key = (str(bicep_file.path), name)
            if key in seen:
                continue
            seen.add(key)
            if name in secure:
                return True
            if name in bicep_file.vars and _carries_secret(
                project, bicep_file, bicep_file.vars[name].value, seen
            ):
                return True
        if ref.type == "member_expression":
            # module.outputs.x -> that module's output x
            chain = text(ref).split(".")
            if len(chain) >= 3 and chain[1] == "outputs":
                module = bicep_file.module(chain[0])
                target = project.module_target(bicep_file, module) if module else None
                if target is not None:
                    for output in target.outputs:
                        if output.name == chain[2] and _carries_secret(
                            project, target, output.value, seen
                        ):
                            return True
    return False


# ------------------------------------------------------------------------------------------------
# Roles, monitoring, network, placement
# ------------------------------------------------------------------------------------------------


def role_assignments(project: Project) -> list[tuple[str, str, BicepFile, Resource]]:
    """(role id, scope resource type, file, resource) for each role assignment."""
    found = []
    for bicep_file, assignment in _deployed(project, "Microsoft.Authorization/roleAssignments"):
        definition = assignment.get("properties", "roleDefinitionId")
        role = ""
        if definition is not None:
            definition = unwrap(definition)
            candidates = (
                call_arguments(definition) if definition.type == "call_expression" else [definition]
            )
            for candidate in candidates:
                value = project.resolve_value(bicep_file, candidate)
                if isinstance(value, str):
                    match = re.search(
                        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value
                    )
                    if match:
                        role = match.group(0)
        scope_node = assignment.get("scope")
        scope_type = ""
        if scope_node is not None:
            target = bicep_file.resource(text(unwrap(scope_node)))
            scope_type = target.type if target else ""
        found.append((role, scope_type, bicep_file, assignment))
    return found


def principal_origins(project: Project, bicep_file: BicepFile, assignment: Resource) -> set[str]:
    """Where a role assignment's principal comes from, as main.bicep writes it (through the
    module parameters that carry it): ``{'identity.properties.principalId'}``."""
    node = assignment.get("properties", "principalId")
    if node is None:
        return set()
    node = unwrap(node)
    if bicep_file is project.main or node.type != "identifier":
        return {text(node)}
    if text(node) not in bicep_file.params:
        return {text(node)}
    found: set[str] = set()
    for origin, written in project.argument_for(bicep_file, text(node)):
        argument = unwrap(written)
        if origin is project.main or argument.type != "identifier":
            found.add(text(argument))
        else:  # a parameter of an intermediate module: follow it one more call up
            found |= {
                text(unwrap(a))
                for f, a in project.argument_for(origin, text(argument))
                if f is project.main
            }
    return found


def check_roles(project: Project, app_identity: str = "identity") -> list[str]:
    """The main app's identity (main.bicep's ``app_identity``) holds each of ROLE_SCOPES."""
    assignments = role_assignments(project)
    principal = f"{app_identity}.properties.principalId"
    problems = []
    for role, scope in ROLE_SCOPES.items():
        matching = [
            (f, r)
            for rid, stype, f, r in assignments
            if rid == role and stype == scope and principal in principal_origins(project, f, r)
        ]
        if not matching:
            problems.append(f"no role assignment of {role} on a {scope} for the app identity")
        for bicep_file, resource in matching:
            if evaluate(resource.get("properties", "principalType")) != "ServicePrincipal":
                problems.append(
                    f"{_where(bicep_file, resource.node)}: principalType is not ServicePrincipal"
                )
            if resource.condition is not None:
                problems.append(
                    f"{_where(bicep_file, resource.node)}: the app's role {role} is conditional"
                )
    return problems


def check_monitoring(project: Project) -> list[str]:
    problems = []
    components = _deployed(project, "Microsoft.Insights/components")
    for bicep_file, component in components:
        where = _where(bicep_file, component.node)
        if component.get("properties", "WorkspaceResourceId") is None:
            problems.append(f"{where}: Application Insights is not workspace-based")
        if evaluate(component.get("properties", "DisableLocalAuth")) is not True:
            problems.append(f"{where}: Application Insights local auth is not disabled")
    if not components:
        problems.append("no Application Insights component")
    if not _deployed(project, "Microsoft.OperationalInsights/workspaces"):
        problems.append("no Log Analytics workspace")
    return problems


def check_network(project: Project) -> list[str]:
    """IP allow-list from a parameter with default action Deny when non-empty; VNet optional."""
    problems = []
    main = project.main
    for name in ("allowedIpRanges", "virtualNetworkSubnetId"):
        if name not in main.params:
            problems.append(f"main.bicep has no {name} parameter")
    allowed = main.params.get("allowedIpRanges")
    if allowed is not None and evaluate(allowed.default) != []:
        problems.append("allowedIpRanges must default to [] (no restriction unless configured)")
    for bicep_file, app in _function_apps(project):
        where = _where(bicep_file, app.node)
        site_config = app.get("properties", "siteConfig")
        rules = get(site_config, "ipSecurityRestrictions")
        default_action = get(site_config, "ipSecurityRestrictionsDefaultAction")
        if rules is None or not _uses_param(project, bicep_file, rules, "allowedIpRanges"):
            problems.append(f"{where}: ipSecurityRestrictions are not built from allowedIpRanges")
        elif "'Allow'" not in text(project_expand(bicep_file, rules)):
            problems.append(f"{where}: ipSecurityRestrictions do not allow the listed ranges")
        if default_action is None or not _deny_when_listed(project, bicep_file, default_action):
            problems.append(
                f"{where}: ipSecurityRestrictionsDefaultAction is not Deny "
                "when allowedIpRanges is set"
            )
        subnet = app.get("properties", "virtualNetworkSubnetId")
        if subnet is None or not _uses_param(project, bicep_file, subnet, "virtualNetworkSubnetId"):
            problems.append(
                f"{where}: virtualNetworkSubnetId does not come from the subnet parameter"
            )
    return problems


def _deny_when_listed(project: Project, bicep_file: BicepFile, node: Node) -> bool:
    """``cond ? 'Deny' : 'Allow'`` (or a literal 'Deny') where cond depends on allowedIpRanges."""
    node = unwrap(node)
    if evaluate(node) == "Deny":
        return True
    if node.type != "ternary_expression":
        return False
    condition = node.child_by_field_name("condition")
    consequence = node.child_by_field_name("consequence")
    alternative = node.child_by_field_name("alternative")
    if condition is None or consequence is None or alternative is None:
        return False
    polarity = _true_when_nonempty(bicep_file, condition)
    if polarity is None or not _uses_param(project, bicep_file, condition, "allowedIpRanges"):
        return False
    deny, allow = (consequence, alternative) if polarity else (alternative, consequence)
    return evaluate(deny) == "Deny" and evaluate(allow) == "Allow"


def _true_when_nonempty(bicep_file: BicepFile, node: Node) -> bool | None:
    """Whether a condition like ``!empty(list)`` holds for a non-empty list (None: unknown)."""
    node = unwrap(node)
    if node.type == "identifier" and text(node) in bicep_file.vars:
        return _true_when_nonempty(bicep_file, bicep_file.vars[text(node)].value)
    if node.type == "unary_expression" and text(node).startswith("!"):
        inner = _true_when_nonempty(bicep_file, significant(node)[-1])
        return None if inner is None else not inner
    if node.type == "call_expression" and call_name(node) == "empty":
        return False
    if node.type == "binary_expression" and re.fullmatch(r"length\(.+\)\s*>\s*0", text(node)):
        return True
    return None


def project_expand(bicep_file: BicepFile, node: Node) -> Node:
    """A var reference replaced by its value (one level), for reading rule bodies."""
    node = unwrap(node)
    if node.type == "identifier" and text(node) in bicep_file.vars:
        return bicep_file.vars[text(node)].value
    return node


def _uses_param(project: Project, bicep_file: BicepFile, node: Node, main_param: str) -> bool:
    """Whether an expression depends on ``main_param`` of main.bicep (through module params)."""
    if bicep_file is project.main:
        return project.depends_on(bicep_file, node, {main_param})
    for name in bicep_file.params:
        if project.depends_on(bicep_file, node, {name}):
            for origin, argument in project.argument_for(bicep_file, name):
                if _uses_param(project, origin, argument, main_param):
                    return True
    return False


def check_location(project: Project) -> list[str]:
    problems = []
    main = project.main
    location = main.params.get("location")
    if (
        location is None
        or location.default is None
        or text(location.default) != "resourceGroup().location"
    ):
        problems.append("main.bicep param location must default to resourceGroup().location")
    for bicep_file in project.files.values():
        for resource in bicep_file.resources:
            value = resource.get("location")
            literal = evaluate(value)
            if literal == "global" and resource.type in GLOBAL_LOCATION_TYPES:
                continue
            if value is not None and isinstance(literal, str):
                problems.append(f"{_where(bicep_file, value)}: literal location {text(value)}")
        for module in bicep_file.modules:
            value = module.get("params", "location")
            if value is not None and isinstance(evaluate(value), str):
                problems.append(f"{_where(bicep_file, value)}: literal location {text(value)}")
        if bicep_file is not main:
            param = bicep_file.params.get("location")
            if param is not None and param.default is not None:
                problems.append(f"{bicep_file.path}: module param location has a default")
    return problems


def check_naming_and_tags(project: Project) -> list[str]:
    problems = []
    uses_unique = any(
        n.type == "call_expression"
        and call_name(n) == "uniqueString"
        and any("resourceGroup" in text(a) for a in call_arguments(n))
        for n in walk(project.main.root)
    )
    if not uses_unique:
        problems.append(
            "main.bicep does not derive names from uniqueString(resourceGroup().id, ...)"
        )
    for bicep_file, resource in project.resources():
        if resource.existing or resource.get("location") is None:
            continue
        if resource.get("tags") is None:
            problems.append(f"{_where(bicep_file, resource.node)}: {resource.type} has no tags")
    for bicep_file, resource in project.resources():
        name = resource.get("name")
        if (
            not resource.existing
            and name is not None
            and resource.get("location") is not None
            and isinstance(evaluate(name), str)
        ):
            problems.append(
                f"{_where(bicep_file, name)}: {resource.type} has a fixed name {text(name)}"
            )
    return problems


#: The ``no-hardcoded-env-urls`` linter rule's default ``disallowedhosts`` (Learn, "Linter rule -
#: no hardcoded environment URL", Configuration), which infra/bicepconfig.json raises to error.
#: The rule matches a host anywhere in a string, and until Bicep 0.38.3 (Azure/bicep#17667,
#: fixing #10308) it read ``@description`` text too: an error-level finding fails ``bicep build``
#: and ``build-params`` (hence ``az deployment`` and ``azd up``) with the Bicep that azd 1.19 and
#: older bring.
ENV_URL_HOSTS = (
    "gallery.azure.com",
    "management.core.windows.net",
    "management.azure.com",
    "database.windows.net",
    "core.windows.net",
    "login.microsoftonline.com",
    "graph.windows.net",
    "trafficmanager.net",
    "datalake.azure.net",
    "azuredatalakestore.net",
    "azuredatalakeanalytics.net",
    "vault.azure.net",
    "api.loganalytics.io",
    "asazure.windows.net",
    "region.asazure.windows.net",
    "batch.core.windows.net",
)
#: The rule's default ``excludedhosts``.
ENV_URL_EXCLUDED = ("schema.management.azure.com",)


def check_env_urls(project: Project) -> list[str]:
    """No string — descriptions included — names a cloud-specific host (:data:`ENV_URL_HOSTS`):
    endpoints come from the resources (``primaryEndpoints``, ``vaultUri``) or ``environment()``."""
    problems = []
    for bicep_file in project.files.values():
        for node in walk(bicep_file.root):
            if node.type != "string":
                continue
            value = text(node).lower()
            for excluded in ENV_URL_EXCLUDED:
                value = value.replace(excluded, "")
            for host in ENV_URL_HOSTS:
                if host in value:
                    problems.append(f"{_where(bicep_file, node)}: a string names {host}")
                    break
    return problems


_MODERN_NODES = frozenset(
    {
        "lambda_expression",
        "type_declaration",
        "user_defined_function",
        "import_functionality",
        "import_statement",
        "import_with_statement",
        "assert_statement",
        "test_block",
    }
)
#: Leaf tokens of newer syntax: spread, safe dereference, null coalescing.
_MODERN_TOKENS = frozenset({"...", ".?", "??"})


def check_conservative_syntax(project: Project) -> list[str]:
    """Nothing the offline parsers (tree-sitter-bicep, checkov's pycep) may not understand:
    no lambdas, user-defined types or functions, imports, spread, safe dereference or
    registry modules."""
    problems = []
    for bicep_file in project.files.values():
        for node in walk(bicep_file.root):
            if node.type in _MODERN_NODES:
                problems.append(f"{_where(bicep_file, node)}: {node.type} is not allowed")
            elif node.child_count == 0 and node.type in _MODERN_TOKENS:
                problems.append(f"{_where(bicep_file, node)}: operator {node.type} is not allowed")
        for module in bicep_file.modules:
            if module.source.startswith(("br:", "br/", "ts:", "ts/")):
                problems.append(f"{bicep_file.path}: registry module {module.source}")
    return problems
