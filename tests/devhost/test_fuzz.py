"""Property-based fuzzing of the real app under devhost, from the document it serves.

schemathesis loads ``GET /api/v1/openapi.json`` from a running devhost (the real app with its
embedded SES emulator, SMTP sink and Azurite) and generates, for every documented operation, the
document's own examples, valid requests (positive) and invalid ones (negative). Every answer is
checked: never a 5xx, and its status code, content type, headers and body are the ones the
document gives. Sends really reach the emulators; most fuzzed senders are not allowed, and the
documented 403 is then the right answer.

schemathesis's own pytest integration (``schemathesis.pytest.from_fixture``) is not used: in
4.32.5 it sets ``Function._nodeid``, which pytest 9.2 no longer has. Each operation's strategy
(``APIOperation.as_strategy``) runs under ``hypothesis.given`` here instead, which needs the
schema only at run time, after the fixture started devhost.

Runs are bounded: a fixed number of examples per operation and mode, a timeout on every request,
and ``Prefer: wait=N`` capped at :data:`WAIT_CAP_SECONDS` (``Prefer`` is a documented parameter,
so it is fuzzed; a capped wait takes the same code path). One more pass sends with no ``Prefer``
at all. The last test prints the cases each operation got, by status, and any failure.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app

#: One worker runs the whole module (``make test`` distributes files, ``--dist loadfile``): the
#: last test reads what the others recorded in this process.
pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
AWS_SEND = ("/v1/emails/aws-send", "POST")
USER_SEND = ("/v1/emails/user-send", "POST")
STATUS = ("/v1/emails/{id}", "GET")
EVENTS = ("/v1/emails/{id}/events", "GET")
RECIPIENTS = ("/v1/emails/{id}/recipients", "GET")
SNS_EVENTS = ("/v1/events/ses", "POST")
SUPPRESSION_GET = ("/v1/suppressions/{email}", "GET")
SUPPRESSION_DELETE = ("/v1/suppressions/{email}", "DELETE")
UNSUBSCRIBE_PAGE = ("/v1/unsubscribe/{token}", "GET")
UNSUBSCRIBE = ("/v1/unsubscribe/{token}", "POST")
HEALTH = ("/health", "GET")
PAUSE = ("/v1/emails/{id}/pause", "POST")
RESUME = ("/v1/emails/{id}/resume", "POST")
CANCEL = ("/v1/emails/{id}/cancel", "POST")
CONTROLS = [PAUSE, RESUME, CANCEL]
ACCOUNT = ("/v1/account", "GET")
GUARD_RESET = ("/v1/account/guard/reset", "POST")
#: Operations with no input at all: fuzzed in the valid mode only.
NO_INPUT = [HEALTH, ACCOUNT, GUARD_RESET]
OPERATIONS = [
    AWS_SEND,
    USER_SEND,
    STATUS,
    RECIPIENTS,
    EVENTS,
    *CONTROLS,
    SNS_EVENTS,
    SUPPRESSION_GET,
    SUPPRESSION_DELETE,
    UNSUBSCRIBE_PAGE,
    UNSUBSCRIBE,
    ACCOUNT,
    GUARD_RESET,
    HEALTH,
]
SENDS = [AWS_SEND, USER_SEND]
SEND_PATHS = {path for path, _ in SENDS}
#: A mailbox-simulator address devhost's SES emulator answers with a hard bounce: the app puts
#: it on the suppression list, so the suppression routes get real entries to answer 200/204 for.
BOUNCE = "bounce@simulator.amazonses.com"
#: The one sender aws-send allows by default (SENDMAIL_ALLOWED_SENDERS).
ALLOWED_SENDER = "se@aifactory.page"
#: Generated cases per operation and mode (the document's examples come on top).
MAX_EXAMPLES = 40
MAX_EXAMPLES_WITHOUT_PREFER = 15
#: The longest ``Prefer: wait`` a fuzzed send may ask for.
WAIT_CAP_SECONDS = 5
REQUEST_TIMEOUT_SECONDS = 30
_WAIT = re.compile(r"(wait\s*=\s*\"?)(\d+)", re.IGNORECASE)

#: Statuses per (pass, operation); how sends carried ``Prefer``; failures per (pass, operation).
#: STARTED: the ids of the sends the app accepted, for the status route.
CASES: defaultdict[tuple[str, str], Counter[int]] = defaultdict(Counter)
STARTED: list[str] = []
#: Per-recipient failure codes of finished sends (status route, or ``Prefer: wait`` answers).
FAILURE_CODES: Counter[str] = Counter()
PREFER: Counter[str] = Counter()
FAILURES: defaultdict[tuple[str, str], list[str]] = defaultdict(list)

SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=list(hypothesis.HealthCheck),
    print_blob=True,
)

Adjust = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    with real_app(tmp_path_factory.mktemp("fuzz-app") / "state", FAST_SES) as process:
        yield process


@pytest.fixture(scope="module")
def api_schema(app: DevhostProcess) -> Any:
    return schemathesis.openapi.from_url(f"{app.base_url}/api/v1/openapi.json", timeout=30)


def _name(operation: tuple[str, str]) -> str:
    return f"{operation[1]} {operation[0]}"


def cap_wait(headers: dict[str, Any]) -> None:
    for name, value in list(headers.items()):
        if name.lower() == "prefer" and isinstance(value, str):
            headers[name] = _WAIT.sub(
                lambda m: f"{m.group(1)}{min(int(m.group(2)), WAIT_CAP_SECONDS)}", value
            )


def drop_prefer(headers: dict[str, Any]) -> None:
    for name in [h for h in headers if h.lower() == "prefer"]:
        del headers[name]


def send_case(label: str, app: DevhostProcess, case: Any, adjust: Adjust) -> None:
    """Send one case with the function key and run the checks; record what happened."""
    headers: dict[str, Any] = dict(case.headers or {})
    adjust(headers)
    headers["x-functions-key"] = app.key
    case.headers = headers
    operation = f"{case.method.upper()} {case.path}"
    is_send = case.method.upper() == "POST" and case.path in SEND_PATHS
    if is_send:
        prefer = next((str(v) for k, v in headers.items() if k.lower() == "prefer"), None)
        PREFER["absent" if prefer is None else "wait" if _WAIT.search(prefer) else "other"] += 1
    try:
        response = case.call_and_validate(
            session=app.session, checks=CHECKS, timeout=REQUEST_TIMEOUT_SECONDS
        )
    except Exception as error:
        FAILURES[(label, operation)].append(f"{type(error).__name__}: {str(error)[:500]}")
        raise
    CASES[(label, operation)][response.status_code] += 1
    if is_send and response.status_code in (200, 202):
        STARTED.append(response.json()["id"])
    if response.status_code == 200 and (is_send or case.path == STATUS[0]):  # a finished send
        FAILURE_CODES.update(failure["code"] for failure in response.json()["failures"])


def run(
    label: str,
    app: DevhostProcess,
    strategy: st.SearchStrategy[Any],
    adjust: Adjust,
    max_examples: int,
) -> None:
    @hypothesis.settings(SETTINGS, max_examples=max_examples)
    @hypothesis.given(case=strategy)
    def fuzz(case: Any) -> None:
        send_case(label, app, case, adjust)

    fuzz()


def test_the_document_has_the_operations_fuzzed_here(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == {_name(operation) for operation in OPERATIONS}


@pytest.mark.parametrize("operation", OPERATIONS, ids=_name)
def test_the_documented_examples_answer_as_documented(
    app: DevhostProcess, api_schema: Any, operation: tuple[str, str]
) -> None:
    api_operation = api_schema[operation[0]][operation[1]]
    examples = api_operation.get_strategies_from_examples()
    # GET /health documents no input, so it has no request example: one plain call.
    strategy = st.one_of(*examples) if examples else api_operation.as_strategy()
    run("examples", app, strategy, cap_wait, max_examples=5)


# GET /health and the account routes take no input, so they have no invalid variant: they are
# fuzzed in the valid mode only.
MODES = [
    (operation, mode)
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (operation in NO_INPUT and mode is GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize(("operation", "mode"), MODES, ids=[f"{_name(o)}-{m}" for o, m in MODES])
def test_every_operation_answers_as_documented(
    app: DevhostProcess, api_schema: Any, operation: tuple[str, str], mode: GenerationMode
) -> None:
    api_operation = api_schema[operation[0]][operation[1]]
    strategy = api_operation.as_strategy(generation_mode=mode)
    run(str(mode), app, strategy, cap_wait, MAX_EXAMPLES)


def test_sends_from_the_allowed_sender_answer_as_documented(
    app: DevhostProcess, api_schema: Any
) -> None:
    """Fuzzed aws-sends from the one allowed sender: past the 403, into admission and SES."""

    def from_allowed_sender(case: Any) -> Any:
        if isinstance(case.body, dict):
            case.body = {**case.body, "senderEmail": ALLOWED_SENDER}
        return case

    strategy = api_schema[AWS_SEND[0]][AWS_SEND[1]].as_strategy().map(from_allowed_sender)
    run("allowed", app, strategy, cap_wait, MAX_EXAMPLES)


def test_the_status_of_real_sends_answers_as_documented(
    app: DevhostProcess, api_schema: Any
) -> None:
    """The status route with the ids of the sends above: 200 and 202 bodies, not only 404s."""
    assert STARTED, "no send was accepted before this test"
    status = api_schema[STATUS[0]][STATUS[1]]
    strategy = st.sampled_from(sorted(set(STARTED))).flatmap(
        lambda instance_id: status.as_strategy(path_parameters={"id": instance_id})
    )
    run("real-ids", app, strategy, cap_wait, MAX_EXAMPLES)


@pytest.mark.parametrize("operation", CONTROLS, ids=_name)
def test_controlling_real_sends_answers_as_documented(
    app: DevhostProcess, api_schema: Any, operation: tuple[str, str]
) -> None:
    """Pause, resume and cancel with the ids of the sends above: 200s and 409s, not only 404s."""
    assert STARTED, "no send was accepted before this test"
    control = api_schema[operation[0]][operation[1]]
    strategy = st.sampled_from(sorted(set(STARTED))).flatmap(
        lambda instance_id: control.as_strategy(path_parameters={"id": instance_id})
    )
    run("real-ids", app, strategy, cap_wait, MAX_EXAMPLES_WITHOUT_PREFER)


def test_the_events_of_real_sends_answer_as_documented(
    app: DevhostProcess, api_schema: Any
) -> None:
    """The events route with the ids of the sends above: 200 pages, not only 404s."""
    assert STARTED, "no send was accepted before this test"
    events = api_schema[EVENTS[0]][EVENTS[1]]
    strategy = st.sampled_from(sorted(set(STARTED))).flatmap(
        lambda instance_id: events.as_strategy(path_parameters={"id": instance_id})
    )
    run("real-ids", app, strategy, cap_wait, MAX_EXAMPLES)


def test_the_recipients_of_real_sends_answer_as_documented(
    app: DevhostProcess, api_schema: Any
) -> None:
    """The recipients route with the ids of the sends above: 200 pages, not only 404s."""
    assert STARTED, "no send was accepted before this test"
    recipients = api_schema[RECIPIENTS[0]][RECIPIENTS[1]]
    strategy = st.sampled_from(sorted(set(STARTED))).flatmap(
        lambda instance_id: recipients.as_strategy(path_parameters={"id": instance_id})
    )
    run("real-ids", app, strategy, cap_wait, MAX_EXAMPLES)


def test_the_suppression_routes_answer_as_documented_for_a_listed_address(
    app: DevhostProcess, api_schema: Any
) -> None:
    """A hard bounce from the emulator lists an address: GET then answers 200, DELETE 204."""
    send = app.request(
        "POST",
        "/api/v1/emails/aws-send",
        json={
            "senderEmail": ALLOWED_SENDER,
            "recipientEmails": [BOUNCE],
            "subject": "s",
            "body": "b",
        },
        headers={"Prefer": "wait=20"},
    )
    assert send.status_code == 200, send.text
    deadline = time.monotonic() + 30
    while app.request("GET", f"/api/v1/suppressions/{BOUNCE}").status_code != 200:
        assert time.monotonic() < deadline, "the bounce never put the address on the list"
        time.sleep(0.2)
    for operation in (SUPPRESSION_GET, SUPPRESSION_DELETE):
        strategy = api_schema[operation[0]][operation[1]].as_strategy(
            path_parameters={"email": BOUNCE}
        )
        run("listed", app, strategy, cap_wait, 5)


def test_the_unsubscribe_routes_answer_as_documented_for_a_genuine_token(
    app: DevhostProcess, api_schema: Any
) -> None:
    """With a token made under devhost's own key (<state>/unsubscribe-key): the page and the
    one click answer 200 (JSON, or HTML when the fuzzed request prefers it), not only 404s."""
    from sendmail.sending.unsubscribe import UnsubscribeTokens

    key = (app.state_dir / "unsubscribe-key").read_text(encoding="utf-8").strip()
    token = UnsubscribeTokens(key).make("fuzz-send", "fuzzed@example.com")
    for operation in (UNSUBSCRIBE_PAGE, UNSUBSCRIBE):
        strategy = api_schema[operation[0]][operation[1]].as_strategy(
            path_parameters={"token": token}
        )
        run("genuine", app, strategy, cap_wait, 10)


@pytest.mark.parametrize("operation", SENDS, ids=_name)
def test_sends_without_prefer_answer_as_documented(
    app: DevhostProcess, api_schema: Any, operation: tuple[str, str]
) -> None:
    strategy = api_schema[operation[0]][operation[1]].as_strategy()
    run("no-prefer", app, strategy, drop_prefer, MAX_EXAMPLES_WITHOUT_PREFER)


def test_every_operation_was_fuzzed(capsys: pytest.CaptureFixture[str]) -> None:
    """The record: cases per pass and operation, by status, and every failure (none)."""
    lines = ["", "schemathesis cases per pass and operation (status: count):"]
    for (label, operation), statuses in sorted(CASES.items()):
        counts = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        lines.append(f"  {label:9} {operation:26} {sum(statuses.values()):4}  ({counts})")
    per_operation: Counter[str] = Counter()
    for (_, operation), statuses in CASES.items():
        per_operation[operation] += sum(statuses.values())
    lines.append(f"  per operation: {dict(sorted(per_operation.items()))}")
    lines.append(f"  total: {sum(per_operation.values())} cases; Prefer on sends: {dict(PREFER)}")
    lines.append(f"  failure codes of finished sends: {dict(FAILURE_CODES)}")
    for (label, operation), failures in sorted(FAILURES.items()):
        lines.append(f"  FAILED {label} {operation}: {len(failures)}")
        lines.extend(f"    {failure}" for failure in failures[:3])
    with capsys.disabled():
        print("\n".join(lines))

    assert set(per_operation) == {_name(operation) for operation in OPERATIONS}
    real_ids = CASES[("real-ids", _name(STATUS))]
    assert real_ids[200] + real_ids[202] == sum(real_ids.values()) > 0
    assert CASES[("real-ids", _name(EVENTS))][200] > 0
    assert CASES[("real-ids", _name(RECIPIENTS))][200] > 0
    assert CASES[("listed", _name(SUPPRESSION_GET))][200] > 0
    assert CASES[("listed", _name(SUPPRESSION_DELETE))][204] == 1
    assert CASES[("genuine", _name(UNSUBSCRIBE_PAGE))][200] > 0
    assert CASES[("genuine", _name(UNSUBSCRIBE))][200] > 0
    # Whatever the app accepted, its activities handled: none failed unexpectedly (an input
    # the validation let through and the sender then refused would end as BATCH_FAILED).
    assert FAILURE_CODES["BATCH_FAILED"] == 0
    assert PREFER["absent"] > 0
    assert PREFER["wait"] > 0
    assert not FAILURES
