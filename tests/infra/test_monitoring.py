"""The alert rules, the action group and the workbook in infra/ (modules/alerts.bicep,
modules/workbook.bicep, modules/workbook.json), read through the tree-sitter parse tree.

What they must query is the metric catalogue: the table in the docstring of
``sendmail/platform/telemetry.py``, parsed here, so a metric renamed there (or in the alerts and
the workbook) fails these tests instead of leaving a rule that never fires or a blank chart. The
rate thresholds default to the account guard's own settings (``sendmail/platform/settings.py``),
read from the settings model. Each check also runs on a copy of infra/ with one regression, and
must report it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from tree_sitter import Node

from sendmail.platform import telemetry
from sendmail.platform.settings import Settings
from tests.infra import policies
from tests.infra.bicep import (
    BicepFile,
    Project,
    Resource,
    call_arguments,
    call_name,
    evaluate,
    get,
    significant,
    string_template,
    text,
    unwrap,
)
from tests.infra.conftest import INFRA, REPO_ROOT
from tests.infra.test_policies import mutated

ALERTS = PurePosixPath("modules/alerts.bicep")
WORKBOOK = PurePosixPath("modules/workbook.bicep")

RULE_TYPE = "Microsoft.Insights/scheduledQueryRules"
ACTION_GROUP_TYPE = "Microsoft.Insights/actionGroups"
COMPONENT_TYPE = "Microsoft.Insights/components"
WORKBOOK_TYPE = "Microsoft.Insights/workbooks"


@dataclass(frozen=True)
class ExpectedRule:
    """A rule the issue asks for: what its query must read, and words that say what it tests."""

    metrics: frozenset[str]
    words: tuple[str, ...]


#: By the suffix of the rule's name (``${namePrefix}-<suffix>``).
EXPECTED_RULES = {
    "guard-tripped": ExpectedRule(frozenset({"sendmail.guard.trips"}), ()),
    "bounce-rate": ExpectedRule(
        frozenset({"sendmail.sns.events"}), ("'Bounce'", "'Delivery'", "permanent")
    ),
    "complaint-rate": ExpectedRule(
        frozenset({"sendmail.sns.events"}), ("'Complaint'", "'Delivery'")
    ),
    "throttling": ExpectedRule(
        frozenset({"sendmail.recipients.throttled", "sendmail.recipients.sent"}), ()
    ),
    "failed-sends": ExpectedRule(frozenset({"sendmail.sends.finished"}), ("'failed'",)),
    "poisoned-webhooks": ExpectedRule(frozenset({"sendmail.webhooks.deliveries"}), ("'poisoned'",)),
}

#: main.bicep's threshold parameters and the guard setting whose default each must equal.
THRESHOLD_DEFAULTS = {
    "alertBounceRate": "SENDMAIL_GUARD_BOUNCE_RATE",
    "alertComplaintRate": "SENDMAIL_GUARD_COMPLAINT_RATE",
    "alertMinSample": "SENDMAIL_GUARD_MIN_SAMPLE",
}

_METRIC = re.compile(r"sendmail(?:\.[a-z_]+)+\.?")
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


# ------------------------------------------------------------------------------------------------
# The catalogue
# ------------------------------------------------------------------------------------------------


def parse_catalogue(docstring: str) -> frozenset[str]:
    """The metric names of the reStructuredText table under "The catalogue" (first column)."""
    section = docstring.split("**The catalogue**", 1)[1]
    rows = section.split("\n=", 1)[1]  # after the table's top border
    names = re.findall(r"^``(sendmail\.[a-z_.]+)``", rows, flags=re.MULTILINE)
    return frozenset(names)


CATALOGUE = parse_catalogue(telemetry.__doc__ or "")


def test_the_catalogue_lists_every_metric_and_the_code_makes_them() -> None:
    assert {
        "sendmail.sends.started",
        "sendmail.sends.finished",
        "sendmail.recipients.queued",
        "sendmail.recipients.sent",
        "sendmail.recipients.failed",
        "sendmail.recipients.canceled",
        "sendmail.recipients.throttled",
        "sendmail.ses.rate",
        "sendmail.sns.events",
        "sendmail.admission.refusals",
        "sendmail.webhooks.deliveries",
        "sendmail.guard.trips",
    } <= CATALOGUE
    source = Path(telemetry.__file__).read_text(encoding="utf-8")
    code = source.replace(telemetry.__doc__ or "", "")
    for name in CATALOGUE:
        assert f'"{name}"' in code, f"{name} is in the catalogue but no instrument has that name"


def metrics_in(query: str) -> set[str]:
    return set(_METRIC.findall(query))


def unknown_metrics(query: str, catalogue: frozenset[str]) -> list[str]:
    """Names in a query that are not metrics of the catalogue. A literal ending in a dot is a
    prefix (``replace_string(name, 'sendmail.recipients.', '')``): some metric must have it."""
    unknown = []
    for name in sorted(metrics_in(query)):
        known = (
            any(m.startswith(name) for m in catalogue) if name.endswith(".") else name in catalogue
        )
        if not known:
            unknown.append(name)
    return unknown


# ------------------------------------------------------------------------------------------------
# Reading the Bicep: a query is a string, a variable, or format() of them and parameters
# ------------------------------------------------------------------------------------------------


def source_text(bicep_file: BicepFile, node: Node) -> str:
    """The text an expression makes, with each parameter written ``<name>``."""
    node = unwrap(node)
    if node.type == "string":
        return string_template(node) or ""
    if node.type == "number":
        return text(node)
    if node.type == "identifier":
        name = text(node)
        if name in bicep_file.vars:
            return source_text(bicep_file, bicep_file.vars[name].value)
        if name in bicep_file.params:
            return f"<{name}>"
    if node.type == "call_expression" and call_name(node) == "format":
        template, *args = [source_text(bicep_file, a) for a in call_arguments(node)]
        return re.sub(r"\{(\d+)\}", lambda m: args[int(m.group(1))], template)
    raise AssertionError(f"{bicep_file.path}: cannot read {text(node)[:60]!r} as text")


def _file(project: Project, path: PurePosixPath) -> BicepFile:
    found = project.files.get(path)
    assert found is not None, f"infra/{path} is missing"
    return found


def _deployed(bicep_file: BicepFile, rtype: str) -> list[Resource]:
    return [r for r in bicep_file.resources if r.type == rtype and not r.existing]


def _name_suffix(bicep_file: BicepFile, resource: Resource) -> str:
    name = resource.get("name")
    template = string_template(name) if name is not None else None
    return (template or "").rsplit("}-", 1)[-1]


def _rule_query(bicep_file: BicepFile, rule: Resource) -> str:
    criteria = rule.get("properties", "criteria", "allOf")
    items = significant(unwrap(criteria)) if criteria is not None else []
    assert len(items) == 1, f"{bicep_file.path}: one criterion per rule"
    query = get(items[0], "query")
    assert query is not None
    return source_text(bicep_file, query)


def _criterion(rule: Resource) -> Node:
    criteria = rule.get("properties", "criteria", "allOf")
    assert criteria is not None
    return significant(unwrap(criteria))[0]


def _is_component_id(bicep_file: BicepFile, node: Node) -> bool:
    """``x.id`` where x is the Application Insights component named by a parameter."""
    node = unwrap(node)
    if node.type != "member_expression" or not text(node).endswith(".id"):
        return False
    resource = bicep_file.resource(text(node).removesuffix(".id"))
    return (
        resource is not None
        and resource.type == COMPONENT_TYPE
        and text(resource.get("name") or node) in bicep_file.params
    )


def _seconds(duration: str) -> int:
    match = _DURATION.match(duration)
    assert match, f"not an ISO 8601 duration: {duration!r}"
    assert duration not in {"P", "PT"}, f"an empty duration: {duration!r}"
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60


def _main_param_for(project: Project, callee: BicepFile, param: str) -> str:
    """The main.bicep parameter a module parameter is set from."""
    arguments = project.argument_for(callee, param)
    assert len(arguments) == 1, f"{callee.path}: {param} is set {len(arguments)} times"
    caller, node = arguments[0]
    assert caller is project.main, f"{param} is set from {caller.path}"
    assert unwrap(node).type == "identifier", f"{param} is set from {text(node)}"
    assert text(node) in caller.params, f"{param} comes from {text(node)}, not a parameter"
    return text(node)


# ------------------------------------------------------------------------------------------------
# The checks (each returns its problems; the tests run them on infra/ and on regressions)
# ------------------------------------------------------------------------------------------------


def check_alert_rules(project: Project, catalogue: frozenset[str] = CATALOGUE) -> list[str]:
    """Every rule the issue asks for, over Application Insights, with the action group, a
    description and a sane schedule, querying catalogue metrics only."""
    alerts = _file(project, ALERTS)
    problems: list[str] = []
    rules = {_name_suffix(alerts, r): r for r in _deployed(alerts, RULE_TYPE)}
    for missing in sorted(set(EXPECTED_RULES) - set(rules)):
        problems.append(f"no alert rule named ...-{missing}")
    groups = _deployed(alerts, ACTION_GROUP_TYPE)
    for suffix, rule in sorted(rules.items()):
        where = f"{alerts.path}:{rule.node.start_point[0] + 1} ({suffix})"
        props = rule.get("properties")
        if evaluate(rule.get("kind")) != "LogAlert":
            problems.append(f"{where}: kind is not LogAlert")
        scopes = get(props, "scopes")
        items = significant(unwrap(scopes)) if scopes is not None else []
        if len(items) != 1 or not _is_component_id(alerts, items[0]):
            problems.append(f"{where}: scopes is not [the Application Insights component's id]")
        description = evaluate(get(props, "description"))
        if get(props, "description") is None or (
            isinstance(description, str) and len(description) < 40
        ):
            problems.append(f"{where}: no description worth the name")
        severity = evaluate(get(props, "severity"))
        if not isinstance(severity, int) or not 0 <= severity <= 4:
            problems.append(f"{where}: severity {severity!r} is not 0-4")
        if evaluate(get(props, "enabled")) is not True:
            problems.append(f"{where}: not enabled")
        if not isinstance(evaluate(get(props, "autoMitigate")), bool):
            problems.append(f"{where}: autoMitigate is not set")
        frequency = evaluate(get(props, "evaluationFrequency"))
        window = evaluate(get(props, "windowSize"))
        if not isinstance(frequency, str) or not isinstance(window, str):
            problems.append(f"{where}: evaluationFrequency and windowSize must be literals")
        elif _seconds(frequency) > _seconds(window) or _seconds(window) > 2 * 86400:
            problems.append(f"{where}: evaluated every {frequency} over {window}")
        action_groups = get(props, "actions", "actionGroups")
        if action_groups is None or not any(
            text(n) == f"{g.symbol}.id"
            for g in groups
            for n in _walk_resolved(alerts, action_groups)
        ):
            problems.append(f"{where}: does not notify the action group")
        query = _rule_query(alerts, rule)
        for name in unknown_metrics(query, catalogue):
            problems.append(f"{where}: queries {name}, which is not in the catalogue")
        expected = EXPECTED_RULES.get(suffix)
        if expected is not None:
            for name in sorted(expected.metrics - metrics_in(query)):
                problems.append(f"{where}: does not query {name}")
            for word in expected.words:
                if word not in query:
                    problems.append(f"{where}: query does not mention {word}")
    return problems


def _walk_resolved(bicep_file: BicepFile, node: Node) -> Iterator[Node]:
    """The nodes of an expression, following variables."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current.type == "identifier" and text(current) in bicep_file.vars:
            stack.append(bicep_file.vars[text(current)].value)
        stack.extend(current.children)


def check_action_group(project: Project) -> list[str]:
    """One action group, e-mailing the alertEmail parameter of main.bicep (common schema), and
    only when one is given."""
    alerts = _file(project, ALERTS)
    groups = _deployed(alerts, ACTION_GROUP_TYPE)
    if len(groups) != 1:
        return [f"{alerts.path}: {len(groups)} action groups, not 1"]
    group = groups[0]
    problems = []
    receivers = group.get("properties", "emailReceivers")
    items = significant(unwrap(receivers)) if receivers is not None else []
    if len(items) != 1:
        return [f"{alerts.path}: the action group has {len(items)} e-mail receivers, not 1"]
    address = get(items[0], "emailAddress")
    if address is None or unwrap(address).type != "identifier":
        problems.append(f"{alerts.path}: the e-mail address is not a parameter")
    elif _main_param_for(project, alerts, text(address)) != "alertEmail":
        problems.append(f"{alerts.path}: the e-mail address does not come from alertEmail")
    if evaluate(get(items[0], "useCommonAlertSchema")) is not True:
        problems.append(f"{alerts.path}: the receiver does not use the common alert schema")
    if group.condition is None or text(group.condition).replace(" ", "") not in {
        "(!empty(alertEmail))",
        "!empty(alertEmail)",
    }:
        problems.append(f"{alerts.path}: the action group is not deployed only with an e-mail")
    param = project.main.params.get("alertEmail")
    if param is None or evaluate(param.default) != "":
        problems.append("main.bicep: alertEmail must default to '' (no address in the template)")
    return problems


def check_thresholds(project: Project) -> list[str]:
    """The rate rules' thresholds come from main.bicep parameters whose defaults are the guard's,
    and they look back over the guard's window."""
    alerts = _file(project, ALERTS)
    main = project.main
    fields = Settings.model_fields
    problems = []
    for main_param, setting in THRESHOLD_DEFAULTS.items():
        param = main.params.get(main_param)
        if param is None or param.default is None:
            problems.append(f"main.bicep: no {main_param} parameter with a default")
            continue
        default = evaluate(param.default)
        expected = fields[setting].default
        if not isinstance(default, str | int) or float(default) != float(expected):
            problems.append(f"main.bicep: {main_param} = {default!r}, {setting} is {expected!r}")
    rules = {_name_suffix(alerts, r): r for r in _deployed(alerts, RULE_TYPE)}
    for suffix, main_params in {
        "bounce-rate": ("alertBounceRate", "alertMinSample"),
        "complaint-rate": ("alertComplaintRate", "alertMinSample"),
    }.items():
        rule = rules.get(suffix)
        if rule is None:
            problems.append(f"no {suffix} rule")
            continue
        query = _rule_query(alerts, rule)
        used = {_main_param_for(project, alerts, name) for name in re.findall(r"<(\w+)>", query)}
        for main_param in main_params:
            if main_param not in used:
                problems.append(f"{suffix}: the query does not use {main_param}")
        window = evaluate(rule.get("properties", "windowSize"))
        hours = fields["SENDMAIL_GUARD_WINDOW_HOURS"].default
        if not isinstance(window, str) or _seconds(window) != hours * 3600:
            problems.append(f"{suffix}: window {window!r} is not the guard's {hours} hours")
    throttling = rules.get("throttling")
    threshold = get(_criterion(throttling), "threshold") if throttling is not None else None
    if (
        threshold is None
        or unwrap(threshold).type != "identifier"
        or _main_param_for(project, alerts, text(threshold)) != "alertThrottledPercent"
    ):
        problems.append("throttling: the threshold is not the alertThrottledPercent parameter")
    return problems


def workbook_queries(document: Any) -> Iterator[str]:
    """The query of every Logs item (KqlItem), at any depth (groups nest items)."""
    if isinstance(document, dict):
        if document.get("version") == "KqlItem/1.0" and isinstance(document.get("query"), str):
            yield document["query"]
        for value in document.values():
            yield from workbook_queries(value)
    elif isinstance(document, list):
        for value in document:
            yield from workbook_queries(value)


def _loaded_file(bicep_file: BicepFile, node: Node, directory: Path) -> Path | None:
    for current in _walk_resolved(bicep_file, node):
        if current.type == "call_expression" and call_name(current) == "loadTextContent":
            relative = evaluate(call_arguments(current)[0])
            if isinstance(relative, str):
                return directory / bicep_file.path.parent / relative
    return None


def check_workbook(
    project: Project, directory: Path = INFRA, catalogue: frozenset[str] = CATALOGUE
) -> list[str]:
    """A shared workbook with a deterministic GUID name, linked to Application Insights, whose
    JSON parses and charts every metric of the catalogue and no other."""
    bicep_file = _file(project, WORKBOOK)
    workbooks = _deployed(bicep_file, WORKBOOK_TYPE)
    if len(workbooks) != 1:
        return [f"{bicep_file.path}: {len(workbooks)} workbooks, not 1"]
    workbook = workbooks[0]
    problems = []
    if evaluate(workbook.get("kind")) != "shared":
        problems.append(f"{bicep_file.path}: the workbook is not shared")
    name = workbook.get("name")
    if name is None or unwrap(name).type != "call_expression" or call_name(unwrap(name)) != "guid":
        problems.append(f"{bicep_file.path}: the workbook's name is not guid(...)")
    elif any(call_name(n) in {"newGuid", "utcNow"} for n in _walk_resolved(bicep_file, name)):
        problems.append(f"{bicep_file.path}: the workbook's name changes between deployments")
    source_id = workbook.get("properties", "sourceId")
    if source_id is None or not any(
        _is_component_id(bicep_file, n) for n in _walk_resolved(bicep_file, source_id)
    ):
        problems.append(f"{bicep_file.path}: sourceId is not the Application Insights component")
    data = workbook.get("properties", "serializedData")
    path = _loaded_file(bicep_file, data, directory) if data is not None else None
    if path is None or not path.is_file():
        return [*problems, f"{bicep_file.path}: serializedData does not load a workbook file"]
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return [*problems, f"{path.name}: not JSON ({exc})"]
    if not isinstance(document, dict) or document.get("version") != "Notebook/1.0":
        problems.append(f"{path.name}: not a Notebook/1.0 workbook")
    queries = list(workbook_queries(document))
    if not queries:
        problems.append(f"{path.name}: no query")
    charted: set[str] = set()
    for query in queries:
        charted |= metrics_in(query)
        for unknown in unknown_metrics(query, catalogue):
            problems.append(f"{path.name}: a query reads {unknown}, which is not in the catalogue")
    for missing in sorted(catalogue - charted):
        problems.append(f"{path.name}: {missing} is not shown")
    return problems


CHECKS = {
    "alert_rules": check_alert_rules,
    "action_group": check_action_group,
    "thresholds": check_thresholds,
    "workbook": check_workbook,
}


# ------------------------------------------------------------------------------------------------
# The real templates comply
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_monitoring_complies(name: str, infra: Project) -> None:
    assert CHECKS[name](infra) == []


def test_the_parameters_file_reads_the_alert_email_from_the_environment() -> None:
    params = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    line = re.search(r"^param alertEmail = (.+)$", params, flags=re.MULTILINE)
    assert line is not None
    assert line.group(1).startswith("readEnvironmentVariable('SENDMAIL_ALERT_EMAIL', '')")
    for main_param in THRESHOLD_DEFAULTS:
        assigned = re.search(rf"^param {main_param} = '?([0-9.]+)'?$", params, flags=re.MULTILINE)
        assert assigned is not None, main_param
        setting = Settings.model_fields[THRESHOLD_DEFAULTS[main_param]].default
        assert float(assigned.group(1)) == float(setting), main_param


def test_the_deploy_guide_says_where_the_alerts_go() -> None:
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("## Alerts and the workbook", 1)
    assert len(section) == 2, "docs/deploy.md has no 'Alerts and the workbook' section"
    assert "alertEmail" in section[1]
    assert "SENDMAIL_ALERT_EMAIL" in section[1]


# ------------------------------------------------------------------------------------------------
# Each check reports a regression
# ------------------------------------------------------------------------------------------------


A = "modules/alerts.bicep"
REGRESSIONS = [
    (
        "alert_rules",
        (A, "'${namePrefix}-poisoned-webhooks'", "'${namePrefix}-poison'"),
        "no alert rule named ...-poisoned-webhooks",
    ),
    (
        "alert_rules",
        (A, "where name == 'sendmail.guard.trips'", "where name == 'sendmail.guard.tripped'"),
        "queries sendmail.guard.tripped, which is not in the catalogue",
    ),
    (
        "alert_rules",
        (A, "where tostring(customDimensions.outcome) == 'poisoned'", "where true"),
        "query does not mention 'poisoned'",
    ),
    (
        "alert_rules",
        (A, "actionGroups: actionGroupIds", "actionGroups: []"),
        "does not notify the action group",
    ),
    (
        "alert_rules",
        (A, "scopes: [\n      applicationInsights.id", "scopes: [\n      resourceGroup().id"),
        "scopes is not [the Application Insights component's id]",
    ),
    ("alert_rules", (A, "windowSize: 'PT30M'", "windowSize: 'PT10M'"), "evaluated every PT15M"),
    (
        "action_group",
        (A, "emailAddress: alertEmail", "emailAddress: 'ops@example.com'"),
        "the e-mail address is not a parameter",
    ),
    (
        "action_group",
        (A, "useCommonAlertSchema: true", "useCommonAlertSchema: false"),
        "common alert schema",
    ),
    (
        "action_group",
        ("main.bicep", "alertEmail: alertEmail", "alertEmail: allowedSenders"),
        "does not come from alertEmail",
    ),
    (
        "thresholds",
        (
            "main.bicep",
            "param alertBounceRate string = '0.04'",
            "param alertBounceRate string = '0.05'",
        ),
        "alertBounceRate = '0.05', SENDMAIL_GUARD_BOUNCE_RATE is 0.04",
    ),
    (
        "thresholds",
        ("main.bicep", "param alertMinSample int = 500", "param alertMinSample int = 100"),
        "alertMinSample = 100",
    ),
    (
        "thresholds",
        (
            A,
            "''', ratesPrelude, minSample, complaintRate)",
            "''', ratesPrelude, minSample, '0.01')",
        ),
        "complaint-rate: the query does not use alertComplaintRate",
    ),
    (
        "thresholds",
        (A, "threshold: throttledPercent", "threshold: 10"),
        "not the alertThrottledPercent parameter",
    ),
    (
        "workbook",
        (
            "modules/workbook.bicep",
            "guid(applicationInsights.id, 'send-mail-workbook')",
            "newGuid()",
        ),
        "the workbook's name is not guid(...)",
    ),
    (
        "workbook",
        ("modules/workbook.bicep", "kind: 'shared'", "kind: 'user'"),
        "the workbook is not shared",
    ),
    (
        "workbook",
        (
            "modules/workbook.bicep",
            "sourceId: toLower(applicationInsights.id)",
            "sourceId: 'Azure Monitor'",
        ),
        "sourceId is not the Application Insights component",
    ),
]


@pytest.mark.parametrize(
    ("check", "edit", "expected"),
    REGRESSIONS,
    ids=[f"{check}-{i}" for i, (check, _, _) in enumerate(REGRESSIONS)],
)
def test_each_check_reports_a_regression(
    check: str, edit: tuple[str, str, str], expected: str
) -> None:
    problems = CHECKS[check](mutated(edit))
    assert any(expected in p for p in problems), problems


def test_a_metric_renamed_in_the_catalogue_fails_the_rules_and_the_workbook(
    infra: Project,
) -> None:
    renamed = (CATALOGUE - {"sendmail.webhooks.deliveries"}) | {"sendmail.webhooks.attempts"}
    rule_problems = check_alert_rules(infra, renamed)
    assert any("sendmail.webhooks.deliveries, which is not" in p for p in rule_problems)
    workbook_problems = check_workbook(infra, INFRA, renamed)
    assert any("sendmail.webhooks.deliveries, which is not" in p for p in workbook_problems)
    assert any("sendmail.webhooks.attempts is not shown" in p for p in workbook_problems)


def _copy_infra_with_workbook(tmp_path: Path, workbook_text: str) -> Path:
    for path in INFRA.rglob("*.bicep"):
        target = tmp_path / path.relative_to(INFRA)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (tmp_path / "modules" / "workbook.json").write_text(workbook_text, encoding="utf-8")
    return tmp_path


def test_a_workbook_that_is_not_json_or_reads_an_unknown_metric_is_reported(
    tmp_path: Path, infra: Project
) -> None:
    original = (INFRA / "modules" / "workbook.json").read_text(encoding="utf-8")
    broken = _copy_infra_with_workbook(tmp_path / "broken", original[:-10])
    assert any("not JSON" in p for p in check_workbook(infra, broken))

    unknown = original.replace("'sendmail.ses.rate'", "'sendmail.ses.pace'")
    assert unknown != original
    other = _copy_infra_with_workbook(tmp_path / "unknown", unknown)
    problems = check_workbook(infra, other)
    assert any("sendmail.ses.pace, which is not in the catalogue" in p for p in problems)
    assert any("sendmail.ses.rate is not shown" in p for p in problems)


def test_global_is_allowed_as_a_location_for_action_groups_only() -> None:
    project = mutated(("modules/workbook.bicep", "location: location", "location: 'global'"))
    assert any("literal location 'global'" in p for p in policies.check_location(project))


def test_the_app_exports_the_metrics_the_rules_read(infra: Project) -> None:
    """The rules and the workbook read what the app's exporter sends: it needs the connection
    string, and the identity in APPLICATIONINSIGHTS_AUTHENTICATION_STRING since the component
    refuses local auth (azure-monitor-opentelemetry-exporter reads that setting for its
    credential: export/_base.py, ``_get_authentication_credential``). The exporter is configured by
    the app, lazily, not by the worker at every cold start (sendmail/platform/telemetry.py):
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY stays unset."""
    settings = policies.app_settings(infra)
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    _, auth = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert (string_template(auth) or "").startswith("Authorization=AAD;ClientId=")
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings
    if "SENDMAIL_TELEMETRY_ENABLED" in settings:
        _, enabled = settings["SENDMAIL_TELEMETRY_ENABLED"]
        assert evaluate(enabled) != "false"
