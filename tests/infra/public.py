"""The public app: what stays reachable when the caller IP allow-list is on.

App Service access restrictions apply to a whole app, not to a path, so with ``allowedIpRanges``
set the routes that must answer anyone — unsubscribe (mail clients), the SNS events route (SNS
has no address range to allow) and health — are served by a second app from the same module
(``modules/functionapp.bicep`` with ``functions: 'public'``): no IP restriction, no Durable
function, no SES or sealing secret, its own identity without the task hub's queues. The main app
keeps the allow-list. docs/deploy.md, "What stays public", says why.

One module file serves both apps, so a check over the file cannot tell them apart. These checks
evaluate each *call* of the module instead: main.bicep's parameters are given values (the
allow-list empty and set), each call's arguments are computed with them, and the module's
expressions are computed with those arguments (:func:`tests.infra.bicep.compute`, symbolic for
what only exists at run time, such as an identity's client id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.infra.bicep import (
    BicepFile,
    Expr,
    Module,
    Project,
    Unresolved,
    Value,
    compute,
    evaluate,
    object_items,
)
from tests.infra.policies import principal_origins, role_assignments

APP_MODULE = "modules/functionapp.bicep"
#: An allow-list to evaluate the templates with (TEST-NET-3, RFC 5737).
CALLERS = ["203.0.113.0/24"]
ALL, PUBLIC = "all", "public"

#: Key Vault references only the sending (main) app may have.
SENDING_SECRETS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SENDMAIL_SEALING_KEY"})
#: The one secret the public app reads.
PUBLIC_SECRETS = frozenset({"SENDMAIL_UNSUBSCRIBE_KEYS"})

#: Built-in roles (policies.ROLE_SCOPES has the main identity's).
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
#: The public identity's roles and scopes: the Functions host's own needs (blob; table for its
#: diagnostic events and the service's tables), telemetry and the Key Vault reference — never
#: the task hub's queues (functions-reference#connecting-to-host-storage-with-an-identity).
#: Storage Queue Data Message Sender: the public app queues webhooks, on that one queue only.
QUEUE_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
PUBLIC_ROLES = {
    (QUEUE_MESSAGE_SENDER, "Microsoft.Storage/storageAccounts/queueServices/queues"),
    (BLOB_DATA_OWNER, "Microsoft.Storage/storageAccounts"),
    (TABLE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"),
    (METRICS_PUBLISHER, "Microsoft.Insights/components"),
    (SECRETS_USER, "Microsoft.KeyVault/vaults"),
}


@dataclass(frozen=True)
class Instance:
    """One call of the function app module, evaluated for given main.bicep parameter values."""

    symbol: str
    functions: Value
    deployed: bool
    env: dict[str, Value]
    module: BicepFile

    def value(self, *path: str) -> Value:
        """A property of the site, computed (run-time parts symbolic)."""
        site = next(
            r for r in self.module.resources if r.type == "Microsoft.Web/sites" and not r.existing
        )
        node = site.get(*path)
        if node is None:
            raise Unresolved(f"{self.module.path}: the site has no {'.'.join(path)}")
        return compute(self.module, node, self.env, symbolic=True)

    def settings(self) -> dict[str, Value]:
        listed = self.value("properties", "siteConfig", "appSettings")
        if not isinstance(listed, list):
            raise Unresolved(f"{self.symbol}: appSettings is not an array")
        found: dict[str, Value] = {}
        for item in listed:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise Unresolved(f"{self.symbol}: an app setting without a name")
            found[str(item["name"])] = item.get("value")
        return found


def main_env(project: Project, **values: Value) -> dict[str, Value]:
    """main.bicep's parameters: ``values``, else the defaults (symbolic where run-time)."""
    main = project.main
    env: dict[str, Value] = {}
    for name, param in main.params.items():
        if name in values:
            env[name] = values[name]
        elif param.default is not None:
            env[name] = compute(main, param.default, env, symbolic=True)
        else:
            env[name] = Expr(param.node)
    return env


def app_calls(project: Project) -> list[tuple[BicepFile, Module]]:
    target = project.files.get(_path(project, APP_MODULE))
    return [(f, m) for f, m in project.callers(target)] if target is not None else []


def _path(project: Project, name: str) -> Any:
    return next((p for p in project.files if str(p) == name), None)


def instances(project: Project, allowed: list[str]) -> list[Instance]:
    """Every call of the function app module, with ``allowedIpRanges = allowed``."""
    env = main_env(project, allowedIpRanges=list(allowed))
    found = []
    for caller, call in app_calls(project):
        module = project.module_target(caller, call)
        if module is None:
            continue
        deployed = True
        if call.condition is not None:
            decided = compute(caller, call.condition, env)
            if not isinstance(decided, bool):
                raise Unresolved(f"{call.symbol}: its condition is not a bool")
            deployed = decided
        arguments = object_items(call.get("params") or call.body)
        module_env = {
            name: compute(caller, node, env, symbolic=True) for name, node in arguments.items()
        }
        for name, param in module.params.items():
            if name not in module_env and param.default is not None:
                module_env[name] = compute(module, param.default, module_env, symbolic=True)
        found.append(
            Instance(call.symbol, module_env.get("functions"), deployed, module_env, module)
        )
    return found


def _render(value: Value) -> str:
    return "${" + value.source + "}" if isinstance(value, Expr) else str(value)


def check_public_app(project: Project) -> list[str]:
    """With the allow-list set: the main app denies everyone else and sends its mail's
    unsubscribe links to the public app, which is open, serves only the public functions, holds
    only the unsubscribe keys and runs no Durable group. Without it: one app, serving all."""
    try:
        return _check_public_app(project)
    except Unresolved as exc:
        return [f"the apps cannot be evaluated: {exc}"]


def _check_public_app(project: Project) -> list[str]:
    problems: list[str] = []
    calls = app_calls(project)
    kinds = sorted(str(evaluate(c.get("params", "functions"))) for _, c in calls)
    if kinds != [ALL, PUBLIC]:
        return [
            f"{APP_MODULE} must be called once for the main app and once for the public "
            f"app (functions 'all' and 'public'); found {kinds}"
        ]
    for allowed in ([], CALLERS):
        listed = "set" if allowed else "empty"
        apps = {i.functions: i for i in instances(project, allowed)}
        main, public = apps[ALL], apps[PUBLIC]
        if not main.deployed:
            problems.append(
                f"the main app ({main.symbol}) is not deployed when allowedIpRanges is {listed}"
            )
        if public.deployed != bool(allowed):
            problems.append(
                f"the public app ({public.symbol}) is "
                f"{'deployed' if public.deployed else 'not deployed'} when allowedIpRanges is "
                f"{listed}: it must exist exactly when the allow-list does"
            )
        problems += _network(main, public, allowed)
        problems += _settings(main, public, allowed)
        if public.deployed:
            problems += _separation(main, public)
    return problems


def _restrictions(app: Instance) -> tuple[Value, list[str]]:
    action = app.value("properties", "siteConfig", "ipSecurityRestrictionsDefaultAction")
    rules = app.value("properties", "siteConfig", "ipSecurityRestrictions")
    allowed = [
        str(r.get("ipAddress"))
        for r in (rules if isinstance(rules, list) else [])
        if isinstance(r, dict) and r.get("action") == "Allow"
    ]
    return action, allowed


def _network(main: Instance, public: Instance, allowed: list[str]) -> list[str]:
    problems = []
    action, listed = _restrictions(main)
    if (action, listed) != ("Deny" if allowed else "Allow", allowed):
        problems.append(
            f"the main app ({main.symbol}) with allowedIpRanges={allowed}: default action "
            f"{action!r} allowing {listed}; it must deny everyone but the allow-list"
        )
    if public.deployed:
        action, listed = _restrictions(public)
        if action != "Allow" or listed:
            problems.append(
                f"the public app ({public.symbol}) has an IP restriction (default action "
                f"{action!r}, allowing {listed}): mail clients and SNS could not reach it"
            )
    return problems


def _settings(main: Instance, public: Instance, allowed: list[str]) -> list[str]:
    problems = []
    apps = [main, public] if public.deployed else [main]
    for app in apps:
        settings = app.settings()
        if settings.get("SENDMAIL_FUNCTIONS") != app.functions:
            problems.append(
                f"{app.symbol}: SENDMAIL_FUNCTIONS is {settings.get('SENDMAIL_FUNCTIONS')!r}, "
                f"not {app.functions!r}"
            )
        references = {
            name
            for name, value in settings.items()
            if isinstance(value, str) and value.startswith("@Microsoft.KeyVault(SecretUri=")
        }
        wanted = SENDING_SECRETS | PUBLIC_SECRETS if app is main else PUBLIC_SECRETS
        if references != wanted:
            problems.append(
                f"{app.symbol}: Key Vault references {sorted(references)}, not {sorted(wanted)}"
            )
    own = f"https://{_render(main.env.get('functionAppName'))}.azurewebsites.net"
    expected = f"https://${{{public.symbol}.outputs.defaultHostName}}" if allowed else own
    url = main.settings().get("SENDMAIL_PUBLIC_BASE_URL")
    if url != expected:
        problems.append(
            f"the main app's SENDMAIL_PUBLIC_BASE_URL with allowedIpRanges={allowed} is {url!r}, "
            f"not {expected!r}: unsubscribe links must reach an app that answers anyone"
        )
    if public.deployed:
        public_own = f"https://{_render(public.env.get('functionAppName'))}.azurewebsites.net"
        if public.settings().get("SENDMAIL_PUBLIC_BASE_URL") != public_own:
            problems.append(f"{public.symbol}: SENDMAIL_PUBLIC_BASE_URL is not its own address")
        ready = public.value(
            "properties", "functionAppConfig", "scaleAndConcurrency", "alwaysReady"
        )
        if ready != []:
            problems.append(
                f"the public app ({public.symbol}) keeps always-ready instances {ready}: it runs "
                "no Durable function and scales to zero"
            )
    return problems


def _separation(main: Instance, public: Instance) -> list[str]:
    problems = []
    for name, what in (
        ("identityId", "identity"),
        ("planName", "plan"),
        ("functionAppName", "name"),
        ("deploymentContainerName", "package container"),
        ("azdServiceName", "azd service"),
    ):
        if _render(main.env.get(name)) == _render(public.env.get(name)):
            problems.append(f"the public app shares the main app's {what} ({name})")
    return problems


def check_public_roles(project: Project) -> list[str]:
    """The public app's identity holds exactly PUBLIC_ROLES, never the task hub's queues."""
    apps = {i.functions: i for i in instances(project, CALLERS)}
    public = apps.get(PUBLIC)
    if public is None:
        return ["no public app"]
    identity = public.env.get("identityId")
    if not isinstance(identity, Expr) or not identity.source.endswith(".id"):
        return [f"the public app's identity is {_render(identity)}, not an identity's id"]
    principal = identity.source.removesuffix(".id") + ".properties.principalId"
    held = {
        (role, scope)
        for role, scope, f, r in role_assignments(project)
        if principal in principal_origins(project, f, r)
    }
    problems = []
    if any(role == QUEUE_DATA_CONTRIBUTOR for role, _ in held):
        problems.append(
            "the public app's identity holds Storage Queue Data Contributor: the task hub's "
            "queues must stay out of its reach"
        )
    if held != PUBLIC_ROLES:
        problems.append(
            f"the public app's identity holds {sorted(held)}, not {sorted(PUBLIC_ROLES)}"
        )
    return problems


def site_tags(instance: Instance) -> dict[str, Value]:
    tags = instance.value("tags")
    return tags if isinstance(tags, dict) else {}
