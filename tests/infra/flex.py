"""The Flex Consumption platform's own rules, as checks over the Bicep parse tree and host.json.

Each rule names where it comes from; ARM applies them only when a deployment runs, so without
them a template that every offline tool accepts can still be refused by Azure. Sources:

[deprecations] "Flex Consumption plan deprecations", learn.microsoft.com/azure/azure-functions/
    functions-app-settings#flex-consumption-plan-deprecations (MicrosoftDocs/azure-docs,
    articles/azure-functions/functions-app-settings.md). ARM answers ``ftpsState`` with error 51021.
[plan] "Azure Functions Flex Consumption plan hosting", learn.microsoft.com/azure/azure-functions/
    flex-consumption-plan (articles/azure-functions/flex-consumption-plan.md): instance sizes,
    per-function scale groups, always-ready instances, Considerations (scale 40..1000, one app per
    plan, no deployment slots, extension bundle [4.0.0, 5.0.0) or later).
[samples] Azure-Samples/azure-functions-flex-consumption-samples, IaC/bicep/main.bicep:
    ``@minValue(40) @maxValue(1000) maximumInstanceCount``, ``@allowed([512,2048,4096])
    instanceMemoryMB``.
[durable-identity] "Configure Durable Functions with managed identity", learn.microsoft.com/
    azure/azure-functions/durable/durable-functions-configure-managed-identity
    (articles/azure-functions/durable/durable-functions-configure-managed-identity.md): the account
    name or the blob, queue and table service URIs; with a user-assigned identity ``__credential``
    = managedidentity and ``__clientId`` ("Durable Functions does not support
    managedIdentityResourceId").
[host-11787] Azure/azure-functions-host#11787: with ``__blobServiceUri`` only, the host can fail
    to create its BlobServiceClient at start-up; ``__accountName`` beside it avoids that.
[cli-31414] Azure/azure-cli#31414: ``az functionapp config access-restriction add`` on a Flex
    app is refused with 51021 ("... FtpsState, Use32BitWorkerProcess, PreWarmedInstanceCount,
    NetFrameworkVersion, FunctionsRuntimeScaleMonitoringEnabled ... for Flex Consumption sites
    is invalid"): the CLI sends the whole site config back.
[durable-flex] "Durable Functions Azure Storage provider", section "Flex Consumption plan",
    learn.microsoft.com/azure/azure-functions/durable/durable-functions-azure-storage-provider#flex-consumption-plan:
    queue polling interval of 10 seconds or less (the default maximum is 30 s); always-ready
    count 1 for the ``durable`` group.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

from tree_sitter import Node

from tests.infra.bicep import (
    BicepFile,
    Param,
    Project,
    Resource,
    Unresolved,
    Value,
    compute,
    evaluate,
    get,
    object_items,
    significant,
    text,
    unwrap,
)

# ------------------------------------------------------------------------------------------------
# Facts
# ------------------------------------------------------------------------------------------------

#: [deprecations] app settings.
FLEX_DEPRECATED_SETTINGS = frozenset(
    {
        "ENABLE_ORYX_BUILD",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_DNS_SERVER",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "WEBSITE_VNET_ROUTE_ALL",
    }
)
#: [deprecations] site properties (``properties.*`` and ``properties.siteConfig.*``). The page
#: says ``isReserved``; ARM's Site schema calls that property ``reserved``: both are listed.
FLEX_DEPRECATED_SITE_PROPERTIES = frozenset(
    {
        "alwaysOn",
        "containerSize",
        "ftpsState",
        "isReserved",
        "reserved",
        "isXenon",
        "javaVersion",
        "linuxFxVersion",
        "netFrameworkVersion",
        "powerShellVersion",
        "functionAppScaleLimit",
        "preWarmedInstanceCount",
        "use32BitWorkerProcess",
        "vnetBackupRestoreEnabled",
        "vnetContentShareEnabled",
        "vnetImagePullEnabled",
        "vnetRouteAllEnabled",
        "windowsFxVersion",
    }
)
#: This project's additions, not on Microsoft's list: a storage connection string (the app uses
#: its identity only), site properties of other plans (Windows-only pythonVersion, Elastic
#: Premium's minimumElasticInstanceCount, Consumption's dailyMemoryTimeQuota), and
#: functionsRuntimeScaleMonitoringEnabled, which ARM names in its 51021 refusal of a Flex site
#: config beside ftpsState and use32BitWorkerProcess ([cli-31414]).
PROJECT_REJECTED_SETTINGS = frozenset({"AzureWebJobsStorage"})
PROJECT_REJECTED_SITE_PROPERTIES = frozenset(
    {
        "pythonVersion",
        "minimumElasticInstanceCount",
        "dailyMemoryTimeQuota",
        "functionsRuntimeScaleMonitoringEnabled",
    }
)

#: [plan] "Instance sizes"; [samples] ``@allowed([512,2048,4096])``.
INSTANCE_MEMORY_SIZES = frozenset({512, 2048, 4096})
#: [plan] Considerations, "Scale: The lowest maximum scale is currently 40. The highest currently
#: supported value is 1000."; [samples] ``@minValue(40) @maxValue(1000)``.
MAXIMUM_INSTANCE_COUNT_RANGE = (40, 1000)
#: [plan] "Per-function scaling": the scale groups, and ``function:<NAMED_FUNCTION>``.
ALWAYS_READY_GROUPS = frozenset({"http", "blob", "durable"})
#: [plan] "Always ready instances": "No less than two always-ready instances can be configured
#: per function or function group while zone redundancy is enabled."
ZONE_REDUNDANT_MIN_ALWAYS_READY = 2

#: [durable-identity] + [host-11787]: the identity-based host storage this app needs. Durable's
#: task hub uses blob, queue AND table; the send ledger uses the table service.
DURABLE_IDENTITY_SETTINGS = (
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
)
#: [durable-identity]: not supported by Durable Functions.
DURABLE_UNSUPPORTED_SETTINGS = frozenset({"AzureWebJobsStorage__managedIdentityResourceId"})

#: [durable-flex]: "Reduce the queue polling interval to 10 seconds or less".
MAX_QUEUE_POLLING_SECONDS = 10
#: [plan] Considerations: "Non-C# function apps must use version [4.0.0, 5.0.0) of the extension
#: bundle, or a later version."
MIN_EXTENSION_BUNDLE_MAJOR = 4


def _where(bicep_file: BicepFile, node: Node) -> str:
    return f"{bicep_file.path}:{node.start_point[0] + 1}"


def _deployed(project: Project, rtype: str) -> list[tuple[BicepFile, Resource]]:
    return [(f, r) for f, r in project.resources() if r.type == rtype and not r.existing]


def flex_plans(project: Project) -> list[tuple[BicepFile, Resource]]:
    return [
        (f, plan)
        for f, plan in _deployed(project, "Microsoft.Web/serverfarms")
        if evaluate(plan.get("sku", "name")) == "FC1"
    ]


def flex_apps(project: Project) -> list[tuple[BicepFile, Resource]]:
    """The function apps hosted on a Flex Consumption plan of the same file."""
    plans = {(str(f.path), p.symbol) for f, p in flex_plans(project)}
    apps = []
    for bicep_file, app in _deployed(project, "Microsoft.Web/sites"):
        farm = app.get("properties", "serverFarmId")
        target = text(unwrap(farm)).split(".")[0] if farm is not None else ""
        if (str(bicep_file.path), target) in plans:
            apps.append((bicep_file, app))
    return apps


# ------------------------------------------------------------------------------------------------
# [deprecations]
# ------------------------------------------------------------------------------------------------


def check_deprecated(project: Project, settings: dict[str, tuple[BicepFile, Node]]) -> list[str]:
    """No site property or app setting that Flex Consumption deprecates ([deprecations]).

    ``settings`` are the app's settings as :func:`policies.app_settings` reads them.
    """
    rejected_properties = {
        p.lower() for p in FLEX_DEPRECATED_SITE_PROPERTIES | PROJECT_REJECTED_SITE_PROPERTIES
    }
    problems = []
    for bicep_file, app in flex_apps(project):
        for where, key in _site_property_keys(project, bicep_file, app):
            if key.lower() in rejected_properties:
                problems.append(f"{where}: site property {key} (deprecated on Flex Consumption)")
    for name, (bicep_file, node) in settings.items():
        if name in FLEX_DEPRECATED_SETTINGS | PROJECT_REJECTED_SETTINGS:
            problems.append(
                f"{_where(bicep_file, node)}: app setting {name} (deprecated on Flex Consumption)"
            )
    return problems


def _site_property_keys(
    project: Project, bicep_file: BicepFile, app: Resource
) -> Iterable[tuple[str, str]]:
    """(where, key) of ``properties.*``, ``properties.siteConfig.*`` and sites/config 'web'."""
    blocks: list[tuple[BicepFile, Node | None]] = [
        (bicep_file, app.get("properties")),
        (bicep_file, app.get("properties", "siteConfig")),
    ]
    for config_file, config in _deployed(project, "Microsoft.Web/sites/config"):
        if evaluate(config.get("name")) == "web":
            blocks.append((config_file, config.get("properties")))
    for origin, block in blocks:
        if block is None:
            continue
        try:
            items = project.resolve_object(origin, block)
        except Unresolved:
            items = {key: (origin, value) for key, value in object_items(block).items()}
        for key, (where_file, value) in items.items():
            yield _where(where_file, value), key


# ------------------------------------------------------------------------------------------------
# [plan] [samples]: instance memory, scale bounds
# ------------------------------------------------------------------------------------------------


def param_chain(
    project: Project, bicep_file: BicepFile, node: Node | None
) -> list[tuple[BicepFile, Param]] | None:
    """The parameters a value passes through, from this file up to main.bicep.

    None when the value is not a plain parameter at every step (a literal or an expression).
    """
    if node is None:
        return None
    node = unwrap(node)
    if node.type != "identifier" or text(node) not in bicep_file.params:
        return None
    param = bicep_file.params[text(node)]
    if bicep_file is project.main:
        return [(bicep_file, param)]
    chains = [param_chain(project, f, n) for f, n in project.argument_for(bicep_file, param.name)]
    if not chains or any(chain is None for chain in chains):
        return None
    return [(bicep_file, param), *(p for chain in chains if chain is not None for p in chain)]


def _decorator_int(param: Param, name: str) -> int | None:
    args = param.decorators.get(name)
    value = evaluate(args[0]) if args else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_scale_bounds(project: Project) -> list[str]:
    """instanceMemoryMB is one of Flex's sizes; maximumInstanceCount stays in 40..1000.

    Every parameter the value passes through must say so (@allowed / @minValue / @maxValue), so
    neither main.bicep nor a module accepts what ARM would refuse ([plan], [samples]).
    """
    low, high = MAXIMUM_INSTANCE_COUNT_RANGE
    problems = []
    for bicep_file, app in flex_apps(project):
        where = _where(bicep_file, app.node)
        scale = app.get("properties", "functionAppConfig", "scaleAndConcurrency")
        memory = get(scale, "instanceMemoryMB")
        chain = param_chain(project, bicep_file, memory)
        if chain is None:
            value = evaluate(memory) if memory is not None else None
            if not (isinstance(value, int) and value in INSTANCE_MEMORY_SIZES):
                problems.append(f"{where}: instanceMemoryMB {value!r} is not one of 512/2048/4096")
        for param_file, param in chain or []:
            allowed = param.allowed()
            if not allowed or any(
                not (isinstance(v, int) and v in INSTANCE_MEMORY_SIZES) for v in allowed
            ):
                problems.append(
                    f"{_where(param_file, param.node)}: param {param.name} @allowed {allowed} "
                    "(instanceMemoryMB) must be a "
                    "subset of Flex Consumption's sizes 512, 2048, 4096"
                )
        count = get(scale, "maximumInstanceCount")
        chain = param_chain(project, bicep_file, count)
        if chain is None:
            value = evaluate(count) if count is not None else None
            if not (isinstance(value, int) and low <= value <= high):
                problems.append(f"{where}: maximumInstanceCount {value!r} is outside {low}..{high}")
        for param_file, param in chain or []:
            where_param = f"{_where(param_file, param.node)}: param {param.name}"
            minimum, maximum = _decorator_int(param, "minValue"), _decorator_int(param, "maxValue")
            if minimum is None or minimum < low:
                problems.append(
                    f"{where_param}: @minValue({minimum}) lets maximumInstanceCount below {low}, "
                    "the lowest maximum Flex Consumption accepts"
                )
            if maximum is None or maximum > high:
                problems.append(
                    f"{where_param}: @maxValue({maximum}) lets maximumInstanceCount above {high}"
                )
    return problems


# ------------------------------------------------------------------------------------------------
# [plan]: always-ready instances, zone redundancy, one app per plan, no slots
# ------------------------------------------------------------------------------------------------


def _domain(param: Param) -> list[Value]:
    """Every value a bool or bounded int parameter can take (the @allowed list if there is one)."""
    allowed = param.allowed()
    if allowed:
        return allowed
    if param.type == "bool":
        return [False, True]
    if param.type == "int":
        low, high = _decorator_int(param, "minValue"), _decorator_int(param, "maxValue")
        if low is not None and high is not None and high - low <= 1000:
            return list(range(low, high + 1))
    raise Unresolved(f"parameter {param.name} has no bounded set of values to try")


def check_always_ready(project: Project) -> list[str]:
    """Always-ready groups exist, counts are whole, and zone redundancy gets at least two.

    The alwaysReady array and the plan's zoneRedundant are computed for every combination of
    the values their parameters can take, so a template that would send Flex "zone-redundant with
    one always-ready instance" is caught whichever way it is written ([plan]).
    """
    problems = []
    plans = {p.symbol: p for _, p in flex_plans(project)}
    for bicep_file, app in flex_apps(project):
        where = _where(bicep_file, app.node)
        node = app.get("properties", "functionAppConfig", "scaleAndConcurrency", "alwaysReady")
        if node is None:
            continue
        farm = text(unwrap(app.get("properties", "serverFarmId") or app.body)).split(".")[0]
        plan = plans.get(farm)
        zone_node = plan.get("properties", "zoneRedundant") if plan is not None else None
        used = _params_used(bicep_file, [node] + ([zone_node] if zone_node is not None else []))
        try:
            domains = [_domain(bicep_file.params[name]) for name in used]
            for values in itertools.product(*domains):
                env = dict(zip(used, values, strict=True))
                entries = compute(bicep_file, node, env)
                zone = compute(bicep_file, zone_node, env) if zone_node is not None else False
                problems += _always_ready_problems(where, entries, zone is True, env)
        except Unresolved as exc:
            problems.append(f"{where}: alwaysReady cannot be checked: {exc}")
    return sorted(set(problems))


def _always_ready_problems(
    where: str, entries: Value, zone: bool, env: dict[str, Any]
) -> list[str]:
    if not isinstance(entries, list):
        return [f"{where}: alwaysReady is not an array ({env})"]
    problems = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        count = entry.get("instanceCount") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not (
            name in ALWAYS_READY_GROUPS or name.startswith("function:")
        ):
            problems.append(
                f"{where}: alwaysReady name {name!r} is not http, blob, durable or function:<name>"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            problems.append(f"{where}: alwaysReady {name} instanceCount {count!r} is not >= 0")
        elif zone and 0 < count < ZONE_REDUNDANT_MIN_ALWAYS_READY:
            settings = ", ".join(f"{k}={v}" for k, v in env.items())
            problems.append(
                f"{where}: alwaysReady {name} has {count} instance(s) on a zone-redundant plan "
                f"(Flex requires at least {ZONE_REDUNDANT_MIN_ALWAYS_READY}) when {settings}"
            )
    return problems


def _params_used(bicep_file: BicepFile, nodes: list[Node]) -> list[str]:
    """Parameters an expression depends on, through variables, in a stable order."""
    found: list[str] = []
    seen: set[str] = set()
    pending = list(nodes)
    while pending:
        node = pending.pop()
        for child in _identifiers(node):
            name = text(child)
            if name in seen:
                continue
            seen.add(name)
            if name in bicep_file.params:
                found.append(name)
            elif name in bicep_file.vars:
                pending.append(bicep_file.vars[name].value)
    return sorted(found)


def _identifiers(node: Node) -> Iterable[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "identifier":
            parent = current.parent
            is_key = (
                parent is not None
                and parent.type == "object_property"
                and (significant(parent)[0].id == current.id)
            )
            if not is_key:
                yield current
        stack.extend(current.children)


def check_one_app_per_plan(project: Project) -> list[str]:
    """One function app per Flex Consumption plan; no deployment slots ([plan] Considerations)."""
    problems = []
    apps = flex_apps(project)
    for bicep_file, plan in flex_plans(project):
        hosted = [
            a
            for f, a in apps
            if f is bicep_file
            and text(unwrap(a.get("properties", "serverFarmId") or a.body)).split(".")[0]
            == plan.symbol
        ]
        if len(hosted) != 1 or hosted[0].loop or plan.loop:
            problems.append(
                f"{_where(bicep_file, plan.node)}: a Flex Consumption plan hosts exactly one app "
                f"(found {len(hosted)}{', in a loop' if any(a.loop for a in hosted) else ''})"
            )
    problems += [
        f"{_where(f, slot.node)}: deployment slots are not supported on Flex Consumption"
        for f, slot in _deployed(project, "Microsoft.Web/sites/slots")
    ]
    return problems


# ------------------------------------------------------------------------------------------------
# [durable-identity] [host-11787]
# ------------------------------------------------------------------------------------------------


def check_durable_storage_identity(
    project: Project, settings: dict[str, tuple[BicepFile, Node]]
) -> list[str]:
    """Durable's task hub reaches blob, queue AND table with the user-assigned identity."""
    problems = [
        f"app setting {name} is missing"
        for name in DURABLE_IDENTITY_SETTINGS
        if name not in settings
    ]
    problems += [
        f"app setting {name} is set: Durable Functions does not support it (use __clientId)"
        for name in sorted(DURABLE_UNSUPPORTED_SETTINGS & set(settings))
    ]
    credential = settings.get("AzureWebJobsStorage__credential")
    if credential is not None and project.resolve_value(*credential) != "managedidentity":
        problems.append("AzureWebJobsStorage__credential is not 'managedidentity'")
    for service in ("blob", "queue", "table"):
        uri = settings.get(f"AzureWebJobsStorage__{service}ServiceUri")
        if uri is not None and not _names_endpoint(project, *uri, service):
            problems.append(
                f"AzureWebJobsStorage__{service}ServiceUri does not come from the storage "
                f"account's {service} endpoint"
            )
    return problems


def _names_endpoint(project: Project, bicep_file: BicepFile, node: Node, service: str) -> bool:
    """The value is the account's ``primaryEndpoints.<service>``, followed through module calls."""
    node = unwrap(node)
    source = text(node)
    if source.endswith(f".primaryEndpoints.{service}"):
        return True
    parts = source.split(".")
    if len(parts) == 3 and parts[1] == "outputs":  # module.outputs.x -> that module's output x
        module = bicep_file.module(parts[0])
        target = project.module_target(bicep_file, module) if module is not None else None
        if target is None:
            return False
        output = next((o for o in target.outputs if o.name == parts[2]), None)
        return output is not None and _names_endpoint(project, target, output.value, service)
    if node.type == "identifier" and source in bicep_file.params:
        origins = project.argument_for(bicep_file, source)
        return bool(origins) and all(_names_endpoint(project, f, n, service) for f, n in origins)
    return False


# ------------------------------------------------------------------------------------------------
# host.json: [durable-flex] [plan]
# ------------------------------------------------------------------------------------------------


def _timespan_seconds(value: object) -> float | None:
    """'00:00:10' -> 10.0; '1.00:00:00' -> 86400.0; None if not a .NET TimeSpan string."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", value.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def check_host_json(host: dict[str, Any]) -> list[str]:
    """Durable's queue polling on Flex, and the extension bundle Flex needs."""
    problems = []
    durable = host.get("extensions", {}).get("durableTask", {})
    provider = durable.get("storageProvider", {})
    raw = provider.get("maxQueuePollingInterval")
    seconds = _timespan_seconds(raw)
    if raw is None:
        problems.append(
            "extensions.durableTask.storageProvider.maxQueuePollingInterval is not set "
            f"(default 30 s; Flex Consumption needs {MAX_QUEUE_POLLING_SECONDS} s or less)"
        )
    elif seconds is None:
        problems.append(f"maxQueuePollingInterval {raw!r} is not a TimeSpan (hh:mm:ss)")
    elif not 0 < seconds <= MAX_QUEUE_POLLING_SECONDS:
        problems.append(
            f"maxQueuePollingInterval {raw!r} is {seconds:g} s: Flex Consumption needs "
            f"{MAX_QUEUE_POLLING_SECONDS} s or less"
        )
    bundle = host.get("extensionBundle", {})
    version = str(bundle.get("version", ""))
    lower = re.match(r"^\s*[\[(]\s*(\d+)", version)
    if bundle.get("id") != "Microsoft.Azure.Functions.ExtensionBundle" or lower is None:
        problems.append(f"extensionBundle {bundle!r} is not the Functions bundle with a range")
    elif int(lower.group(1)) < MIN_EXTENSION_BUNDLE_MAJOR:
        problems.append(
            f"extensionBundle version {version!r}: Flex Consumption needs [4.0.0, 5.0.0) or later"
        )
    return problems
