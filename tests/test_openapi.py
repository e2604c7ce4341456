"""The API describes itself: the OpenAPI document, Swagger UI, and the v1 redirect.

The document is fetched from its route as a caller would, checked with openapi-spec-validator,
compared with the functions the app registers, and held to what the functions really answer: the
bodies they return validate against the schemas the document gives for that route and status.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import azure.functions as func
import pytest
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from api.docs import DOCS_FUNCTIONS
from orchestrators.names import SES_ORCHESTRATOR
from sendmail import services
from sendmail.contract.errors import ValidationFailed
from sendmail.contract.models import AwsEmailRequest, Limits, parse_request
from sendmail.contract.openapi import ADDRESS_RULES, build_openapi
from sendmail.contract.text import LINE_BREAK_CHARACTERS, has_line_break
from sendmail.platform.settings import Settings, get_settings
from tests.support import http
from tests.support.durable import FakeDurableClient, status
from tests.support.http import BASE, FinishingClient, StubQuota, finished

DOCUMENT_URI = "urn:sendmail:openapi"


# --- Helpers ----------------------------------------------------------------------------------


def request(
    app_functions: dict[str, Any], name: str, path: str, **kwargs: Any
) -> func.HttpResponse:
    return http.call(app_functions, name, path, **kwargs)


def fetch_document(app_functions: dict[str, Any]) -> dict[str, Any]:
    response = request(app_functions, "openapi_document", "/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = json.loads(response.get_body())
    return document


@pytest.fixture
def document(app_functions: dict[str, Any]) -> dict[str, Any]:
    return fetch_document(app_functions)


def pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (responses and headers are referenced from components)."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def validator(document: dict[str, Any], location: str) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for the schema at ``location``."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(document)
    )
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#{location}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def response_validator(
    document: dict[str, Any], path: str, method: str, status_code: int
) -> Draft202012Validator:
    """The validator of the JSON body the document gives for this route and status."""
    responses = document["paths"][path][method]["responses"]
    assert str(status_code) in responses, f"{method} {path} does not document {status_code}"
    node = responses[str(status_code)]
    location = pointer("paths", path, method, "responses", str(status_code))
    while "$ref" in node:
        location = node["$ref"].removeprefix("#")
        node = resolve(document, {"$ref": node["$ref"]})
    return validator(document, location + pointer("content", "application/json", "schema"))


def http_functions(app_functions: dict[str, Any]) -> dict[str, Any]:
    return {
        name: f.get_trigger()
        for name, f in app_functions.items()
        if f.get_trigger().type == "httpTrigger"
    }


def media_examples(document: dict[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(where, example, schema location) for every example of a JSON request or response."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            places = [("requestBody", operation.get("requestBody", {}))]
            places += [(f"responses/{code}", r) for code, r in operation["responses"].items()]
            for where, node in places:
                yield from _examples_in(document, f"{method} {path} {where}", node)
    for name, node in document["components"]["responses"].items():
        yield from _examples_in(document, f"components/responses/{name}", node)


def _examples_in(document: dict[str, Any], where: str, node: dict[str, Any]) -> Iterator[Any]:
    media = resolve(document, node).get("content", {}).get("application/json")
    if not media:
        return
    schema_ref = media["schema"]["$ref"].removeprefix("#")
    for label, example in media.get("examples", {}).items():
        yield f"{where} ({label})", example["value"], schema_ref


# --- The document -----------------------------------------------------------------------------


def test_the_served_document_is_a_valid_openapi_3_1_document(document: dict[str, Any]) -> None:
    validate_openapi(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.1.")
    assert document["servers"] == [
        {"url": "/api", "description": "This deployment (the Functions host)."}
    ]


def test_every_http_route_is_documented_and_every_documented_route_exists(
    app_functions: dict[str, Any], document: dict[str, Any]
) -> None:
    triggers = http_functions(app_functions)
    assert set(triggers) >= DOCS_FUNCTIONS  # the exclusion names real functions
    registered = {
        (f"/{trigger.route}", str(getattr(m, "value", m)).lower(), name)
        for name, trigger in triggers.items()
        if name not in DOCS_FUNCTIONS
        for m in trigger.methods
    }
    documented = {
        (path, method, operation["operationId"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == registered
    assert {path for path, _, _ in registered} == {
        "/v1/emails/aws-send",
        "/v1/emails/user-send",
        "/v1/emails/{id}",
        "/v1/emails/{id}/recipients",
        "/v1/emails/{id}/events",
        "/v1/emails/{id}/pause",
        "/v1/emails/{id}/resume",
        "/v1/emails/{id}/cancel",
        "/v1/account",
        "/v1/account/guard/reset",
        "/v1/events/ses",
        "/v1/suppressions/{email}",
        "/v1/unsubscribe/{token}",
        "/health",
    }


def test_the_documented_security_matches_each_functions_auth_level(
    app_functions: dict[str, Any], document: dict[str, Any]
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["functionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": schemes["functionKey"]["description"],
    }
    assert (schemes["functionKeyQuery"]["in"], schemes["functionKeyQuery"]["name"]) == (
        "query",
        "code",
    )
    assert document["security"] == [{"functionKey": []}, {"functionKeyQuery": []}]
    for name, trigger in http_functions(app_functions).items():
        if name in DOCS_FUNCTIONS:
            continue
        [method] = trigger.methods
        operation = document["paths"][f"/{trigger.route}"][str(method.value).lower()]
        auth = str(getattr(trigger.auth_level, "value", trigger.auth_level))
        effective = operation.get("security", document["security"])
        assert (effective == []) == (auth == "anonymous"), name


def test_each_route_documents_its_answers(document: dict[str, Any]) -> None:
    paths = document["paths"]
    codes = {
        (path, method): set(operation["responses"])
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert codes == {
        ("/v1/emails/aws-send", "post"): {
            "200",
            "202",
            "400",
            "401",
            "403",
            "409",
            "422",
            "429",
            "500",
            "503",
        },
        ("/v1/emails/user-send", "post"): {
            "200",
            "202",
            "400",
            "401",
            "403",
            "409",
            "422",
            "429",
            "500",
        },
        ("/v1/emails/{id}", "get"): {"200", "202", "401", "404", "500"},
        ("/v1/emails/{id}/recipients", "get"): {"200", "400", "401", "404", "500"},
        ("/v1/emails/{id}/events", "get"): {"200", "400", "401", "404", "500"},
        ("/v1/emails/{id}/pause", "post"): {"200", "401", "404", "409", "500"},
        ("/v1/emails/{id}/resume", "post"): {"200", "401", "404", "409", "500"},
        ("/v1/emails/{id}/cancel", "post"): {"200", "401", "404", "409", "500"},
        ("/v1/account", "get"): {"200", "401", "500"},
        ("/v1/account/guard/reset", "post"): {"200", "401", "500"},
        ("/v1/events/ses", "post"): {"200", "400", "401", "403", "500"},
        ("/v1/suppressions/{email}", "get"): {"200", "400", "401", "404", "500"},
        ("/v1/suppressions/{email}", "delete"): {"204", "400", "401", "404", "500"},
        ("/v1/unsubscribe/{token}", "get"): {"200", "404", "500"},
        ("/v1/unsubscribe/{token}", "post"): {"200", "404", "500"},
        ("/health", "get"): {"200"},
    }
    for send in ("/v1/emails/aws-send", "/v1/emails/user-send"):
        responses = paths[send]["post"]["responses"]
        assert set(responses["202"]["headers"]) == {"Location", "Retry-After"}
        assert "Preference-Applied" in responses["200"]["headers"]
        headers = {(p["name"], p["in"]) for p in paths[send]["post"]["parameters"]}
        assert headers == {("Prefer", "header"), ("Idempotency-Key", "header")}
        conflict = resolve(document, paths[send]["post"]["responses"]["409"])
        assert "Retry-After" in conflict["headers"]
    assert "Retry-After" in paths["/v1/emails/{id}"]["get"]["responses"]["202"]["headers"]
    too_many = resolve(document, paths["/v1/emails/aws-send"]["post"]["responses"]["429"])
    assert "Retry-After" in too_many["headers"]
    # Every error, on every route, is the v1 envelope.
    for (path, method), statuses in codes.items():
        for code in statuses:
            if int(code) >= 400:
                response = resolve(document, paths[path][method]["responses"][code])
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, code)


def test_the_password_is_write_only(document: dict[str, Any]) -> None:
    password = document["components"]["schemas"]["UserEmailRequest"]["properties"]["password"]
    assert password["writeOnly"] is True
    assert password["format"] == "password"


def value(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's value schema (``anyOf: [value, null]``)."""
    options: list[dict[str, Any]] = [
        o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"
    ]
    assert len(options) == 1
    return options[0]


def test_the_documented_limits_are_the_deployments(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def limits() -> tuple[int, int, int, int, int, int, int, str]:
        schemas = fetch_document(app_functions)["components"]["schemas"]
        aws = schemas["AwsEmailRequest"]["properties"]
        user = schemas["UserEmailRequest"]["properties"]
        return (
            value(aws["recipientEmails"])["maxItems"],
            value(aws["recipients"])["maxItems"],
            value(user["recipientEmails"])["maxItems"],
            value(user["recipients"])["maxItems"],
            aws["subject"]["maxLength"],
            user["subject"]["maxLength"],
            value(aws["html"])["maxLength"],
            aws["body"]["description"],
        )

    *counts, body = limits()
    assert counts == [1_000_000, 1_000_000, 100, 100, 998, 998, 102_400]
    assert "102400 bytes in UTF-8" in body

    monkeypatch.setenv("SENDMAIL_SES_MAX_RECIPIENTS", "3")
    monkeypatch.setenv("SENDMAIL_MAX_SUBJECT_CHARS", "40")
    monkeypatch.setenv("SENDMAIL_MAX_BODY_BYTES", "2000")
    monkeypatch.setenv("SENDMAIL_MAX_HTML_BYTES", "3000")
    services.reset()
    *counts, body = limits()
    assert counts == [3, 3, 100, 100, 40, 40, 3000]
    assert "2000 bytes in UTF-8" in body


def test_the_documented_recipient_limit_is_the_one_requests_are_held_to(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDMAIL_SES_MAX_RECIPIENTS", "3")
    services.reset()
    schemas = fetch_document(app_functions)["components"]["schemas"]
    most = value(schemas["AwsEmailRequest"]["properties"]["recipientEmails"])["maxItems"]
    longest = schemas["AwsEmailRequest"]["properties"]["subject"]["maxLength"]
    limits = Limits.for_aws(get_settings())

    def body(recipients: int, subject_chars: int) -> bytes:
        return json.dumps(
            {
                "senderEmail": "se@aifactory.page",
                "recipientEmails": [f"user{i}@example.com" for i in range(recipients)],
                "subject": "s" * subject_chars,
                "body": "hello",
            }
        ).encode()

    parse_request(AwsEmailRequest, body(most, longest), limits)
    with pytest.raises(ValidationFailed, match="at most 3 distinct"):
        parse_request(AwsEmailRequest, body(most + 1, longest), limits)
    with pytest.raises(ValidationFailed, match="at most 998 characters"):
        parse_request(AwsEmailRequest, body(most, longest + 1), limits)


def test_the_subject_pattern_refuses_every_line_break_the_service_refuses(
    document: dict[str, Any],
) -> None:
    # Found by fuzzing: the pattern (and the validation) refused CR and LF only, while the mail
    # builder also refuses U+0085, U+2028, ... so such a send was accepted, then failed.
    subject = validator(
        document, pointer("components", "schemas", "UserEmailRequest", "properties", "subject")
    )
    assert subject.is_valid("Hello there, 안녕하세요 \t ✓")
    for line_break in LINE_BREAK_CHARACTERS:
        assert not subject.is_valid(f"Hello{line_break}there"), repr(line_break)
        assert has_line_break(f"Hello{line_break}there")


@pytest.mark.parametrize(
    "address",
    [
        "user@mail.test",  # special-use domains: the fuzzer's favourite, 400 before the fix
        "user@mail.invalid",
        "user@printer.local",
        "user@localhost",
        "user@[127.0.0.1]",
        '"two words"@example.com',
        "üser@example.com",
    ],
)
def test_the_address_rules_the_document_states_are_the_ones_enforced(
    document: dict[str, Any], address: str
) -> None:
    """JSON Schema's ``email`` format admits these; the descriptions say they are 400."""
    schemas = document["components"]["schemas"]
    for name in ("AwsEmailRequest", "UserEmailRequest"):
        fields = schemas[name]["properties"]
        for field in ("senderEmail", "recipientEmails"):
            assert ADDRESS_RULES in fields[field]["description"], (name, field)
    body = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": [address],
        "subject": "s",
        "body": "b",
    }
    with pytest.raises(ValidationFailed, match=r"recipientEmails\[0\] must be a valid email"):
        parse_request(AwsEmailRequest, json.dumps(body).encode(), Limits(10, 100, 100))
    parse_request(  # and the same address at a public domain is fine
        AwsEmailRequest,
        json.dumps({**body, "recipientEmails": ["user@mail.example.com"]}).encode(),
        Limits(10, 100, 100),
    )


def test_every_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validator(document, pointer("components", "schemas", name)).validate(example)
            checked += 1
    for where, example, location in media_examples(document):
        try:
            validator(document, location).validate(example)
        except ValidationError as e:
            pytest.fail(f"{where}: {e.message}")
        checked += 1
    # Every request and response model shows at least one example.
    with_examples = {n for n, s in document["components"]["schemas"].items() if s.get("examples")}
    assert {
        "AwsEmailRequest",
        "UserEmailRequest",
        "Accepted",
        "SendResult",
        "EmailStatus",
        "RecipientsPage",
        "ErrorEnvelope",
        "Health",
    } <= with_examples
    assert checked >= 15


def test_a_schema_rejects_what_the_service_would_not_send(document: dict[str, Any]) -> None:
    """The schemas are closed: the example check above is not passing on empty schemas."""
    accepted = validator(document, pointer("components", "schemas", "Accepted"))
    example = document["components"]["schemas"]["Accepted"]["examples"][0]
    assert not accepted.is_valid({**example, "extra": 1})
    assert not accepted.is_valid({k: v for k, v in example.items() if k != "statusUrl"})
    assert not accepted.is_valid({**example, "kind": "fax"})


def test_the_document_is_built_once_per_process(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sendmail.contract.openapi

    builds: list[object] = []
    real = sendmail.contract.openapi.build_openapi

    def counting(settings: Any) -> dict[str, Any]:
        builds.append(settings)
        return real(settings)

    monkeypatch.setattr(sendmail.contract.openapi, "build_openapi", counting)
    services.reset()  # new settings: the next request builds
    first = request(app_functions, "openapi_document", "/api/v1/openapi.json").get_body()
    second = request(app_functions, "openapi_document", "/api/v1/openapi.json").get_body()
    assert first == second
    assert len(builds) == 1


def test_the_prefer_wait_cap_is_documented_as_enforced() -> None:
    from api.http import preferred_wait
    from sendmail.contract.constants import MAX_WAIT_SECONDS

    document = json.dumps(build_openapi(Settings()))
    assert f"N is capped at {MAX_WAIT_SECONDS}" in document
    req = func.HttpRequest("POST", "http://x/", headers={"Prefer": "wait=999"}, body=b"")
    assert preferred_wait(req) == MAX_WAIT_SECONDS


# --- What the functions really answer matches the document ------------------------------------

AWS = {
    "senderEmail": "se@aifactory.page",
    "recipientEmails": ["a@example.com", "b@example.com"],
    "subject": "Hello",
    "body": "Body",
}


def assert_documented(
    document: dict[str, Any], path: str, method: str, response: func.HttpResponse
) -> Any:
    body = json.loads(response.get_body())
    response_validator(document, path, method, response.status_code).validate(body)
    return body


def test_send_answers_match_the_document(
    app_functions: dict[str, Any], document: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services.override(ses=StubQuota())
    send = "/v1/emails/aws-send"

    accepted = request(
        app_functions,
        "aws_send",
        f"/api{send}",
        method="POST",
        body=AWS,
        client=FakeDurableClient(),
    )
    assert accepted.status_code == 202
    assert_documented(document, send, "post", accepted)

    def waited(outcome: Any) -> func.HttpResponse:
        return request(
            app_functions,
            "aws_send",
            f"/api{send}",
            method="POST",
            body=AWS,
            headers={"Prefer": "wait=5"},
            client=FinishingClient(outcome),
        )

    inline = waited(lambda i, a: "0101-abc" if i else ("SES_MESSAGE_REJECTED", "x"))
    assert inline.status_code == 200
    assert assert_documented(document, send, "post", inline)["failures"]
    unsent = waited(lambda i, a: ("SES_MESSAGE_REJECTED", "x"))
    assert unsent.status_code == 500
    assert_documented(document, send, "post", unsent)
    monkeypatch.setenv("SENDMAIL_STATUS_INLINE_RECIPIENTS", "1")
    get_settings.cache_clear()
    linked = waited(lambda i, a: "0101-abc")
    assert linked.status_code == 200
    assert "recipientsUrl" in assert_documented(document, send, "post", linked)

    invalid = request(
        app_functions,
        "aws_send",
        f"/api{send}",
        method="POST",
        body={**AWS, "senderEmail": "not an address"},
        client=FakeDurableClient(),
    )
    assert invalid.status_code == 400
    assert_documented(document, send, "post", invalid)

    forbidden = request(
        app_functions,
        "aws_send",
        f"/api{send}",
        method="POST",
        body={**AWS, "senderEmail": "x@elsewhere.example.com"},
        client=FakeDurableClient(),
    )
    assert forbidden.status_code == 403
    assert_documented(document, send, "post", forbidden)


def test_status_answers_match_the_document(
    app_functions: dict[str, Any], document: dict[str, Any]
) -> None:
    route = "/v1/emails/{id}"
    client = FakeDurableClient()
    client.statuses["run"] = [
        status(
            "run",
            SES_ORCHESTRATOR,
            "Running",
            custom_status={"total": 10, "sent": 4, "failed": 1, "batches": 2, "batchesDone": 1},
        )
    ]
    client.statuses["done"] = [finished("done")]
    client.statuses["failed"] = [status("failed", SES_ORCHESTRATOR, "Failed")]
    seen = {}
    for instance_id in ("run", "done", "failed", "missing"):
        response = request(
            app_functions,
            "email_status",
            f"/api/v1/emails/{instance_id}",
            route_params={"id": instance_id},
            client=client,
        )
        seen[instance_id] = response.status_code
        assert_documented(document, route, "get", response)
    assert seen == {"run": 202, "done": 200, "failed": 200, "missing": 404}


def test_health_answer_matches_the_document(
    app_functions: dict[str, Any], document: dict[str, Any]
) -> None:
    response = request(app_functions, "health", "/api/health")
    assert assert_documented(document, "/health", "get", response) == {"status": "ok"}


# --- Swagger UI -------------------------------------------------------------------------------

_REFERENCE = re.compile(r'(?:href|src|data-openapi-url)="([^"]+)"')


def docs_get(app_functions: dict[str, Any], path: str) -> func.HttpResponse:
    prefix = "/api/v1/docs"
    assert path.startswith(prefix)
    return request(
        app_functions, "docs", path, route_params={"path": path[len(prefix) :].lstrip("/")}
    )


@pytest.mark.parametrize("page", ["/api/v1/docs", "/api/v1/docs/"])
def test_the_docs_page_loads_swagger_ui_from_the_app_alone(
    app_functions: dict[str, Any], page: str
) -> None:
    response = docs_get(app_functions, page)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_body().decode()
    assert "http://" not in html
    assert "https://" not in html  # no CDN: everything comes from this app

    references = [urljoin(f"{BASE}{page}", ref) for ref in _REFERENCE.findall(html)]
    paths = {urlsplit(url).path for url in references}
    assert "/api/v1/openapi.json" in paths  # what Swagger UI is pointed at
    expected_types = {".css": "text/css", ".png": "image/png", ".js": "text/javascript"}
    assets = paths - {"/api/v1/openapi.json"}
    assert {p.rsplit("/", 1)[1] for p in assets} >= {"swagger-ui.css", "swagger-ui-bundle.js"}
    for path in assets:
        asset = docs_get(app_functions, path)
        assert asset.status_code == 200, path
        assert asset.mimetype == expected_types[path[path.rindex(".") :]], path
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert len(asset.get_body()) > 0


def test_swagger_ui_reads_the_document_and_calls_no_outside_validator(
    app_functions: dict[str, Any],
) -> None:
    initializer = docs_get(app_functions, "/api/v1/docs/docs-initializer.js").get_body().decode()
    assert "dataset.openapiUrl" in initializer
    assert "validatorUrl: null" in initializer
    assert "petstore" not in initializer


def test_the_packaged_swagger_ui_can_render_openapi_3_1() -> None:
    from swagger_ui_bundle import swagger_ui_path

    # Swagger UI renders OpenAPI 3.1 from 5.0 on; 4.x (swagger-ui-bundle 1.x) refuses it.
    version = re.fullmatch(r"swagger-ui-(\d+)\.(\d+)\.(\d+)", swagger_ui_path.name)
    assert version is not None
    assert int(version.group(1)) >= 5


@pytest.mark.parametrize(
    "name",
    [
        "../function_app.py",
        "../../local.settings.json",
        "..%2F..%2Ffunction_app.py",
        "/etc/passwd",
        "vendor/../swagger-ui.css",
        "SWAGGER-UI.CSS",
        "index.j2",
        "index.html",
        "swagger-initializer.js",
        "swagger-ui.js.map",
    ],
)
def test_only_the_swagger_ui_files_are_served(app_functions: dict[str, Any], name: str) -> None:
    response = request(app_functions, "docs", f"/api/v1/docs/{name}", route_params={"path": name})
    assert response.status_code == 404
    body = json.loads(response.get_body())
    assert body["status"] == 404
    assert body["path"] == f"/api/v1/docs/{name}"


def test_v1s_swagger_ui_address_redirects_to_the_docs(app_functions: dict[str, Any]) -> None:
    response = request(app_functions, "v1_swagger_ui", "/api/swagger-ui/index.html")
    assert response.status_code == 302
    assert response.headers["Location"] == f"{BASE}/api/v1/docs"


def test_the_docs_routes_are_anonymous_gets(app_functions: dict[str, Any]) -> None:
    routes = {
        name: (
            trigger.route,
            [str(getattr(m, "value", m)) for m in trigger.methods],
            str(getattr(trigger.auth_level, "value", trigger.auth_level)),
        )
        for name, trigger in http_functions(app_functions).items()
        if name in DOCS_FUNCTIONS
    }
    assert routes == {
        "openapi_document": ("v1/openapi.json", ["GET"], "anonymous"),
        "docs": ("v1/docs/{*path}", ["GET"], "anonymous"),
        "v1_swagger_ui": ("swagger-ui/index.html", ["GET"], "anonymous"),
    }


def test_importing_the_app_loads_neither_the_document_nor_swagger_ui() -> None:
    code = (
        "import sys, function_app; "
        "print(','.join(m for m in ('sendmail.contract.openapi', 'sendmail.contract.api_models', "
        "'swagger_ui_bundle', 'jsonschema') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
