"""One-click unsubscribe, called as the host calls the routes: a genuine token's POST puts the
address on the suppression list (UNSUBSCRIBED) and a later marketing batch skips it; repeating is
harmless; a GET shows the page and records nothing; a token that does not read is 404 and
records nothing; no address and no token reach the log."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from html.parser import HTMLParser
from typing import Any

import azure.functions as func
import pytest

from sendmail import services
from sendmail.contract.vocabulary import FailureCode
from sendmail.feedback.suppression import Suppression, skipping_suppressed
from sendmail.platform.tables import TableUnavailable
from sendmail.sending.unsubscribe import UnsubscribeTokens, new_key
from tests.support.http import call
from tests.test_openapi import fetch_document, response_validator
from tests.test_suppression import FakeSend

SEND = "0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5"
EMAIL = "kim.minsu@example.com"
ROUTE = "/v1/unsubscribe/{token}"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK = b"List-Unsubscribe=One-Click"
#: What a browser sends (Chrome's Accept for a page).
BROWSER = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "*/*;q=0.8"
}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    from sendmail.platform.settings import get_settings

    value = new_key()
    monkeypatch.setenv("SENDMAIL_UNSUBSCRIBE_KEYS", value)
    get_settings.cache_clear()
    return value


@pytest.fixture
def token(key: str) -> str:
    return UnsubscribeTokens(key).make(SEND, EMAIL)


@pytest.fixture
def document(app_functions: dict[str, Any]) -> dict[str, Any]:
    return fetch_document(app_functions)


def post(
    app_functions: dict[str, Any],
    token: str,
    body: bytes = ONE_CLICK,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    return call(
        app_functions,
        "unsubscribe",
        f"/api/v1/unsubscribe/{token}",
        method="POST",
        body=body,
        headers=FORM if headers is None else headers,
        route_params={"token": token},
    )


def get(
    app_functions: dict[str, Any], token: str, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return call(
        app_functions,
        "unsubscribe_page",
        f"/api/v1/unsubscribe/{token}",
        headers=headers,
        route_params={"token": token},
    )


def documented_json(document: dict[str, Any], method: str, response: func.HttpResponse) -> Any:
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    response_validator(document, ROUTE, method, response.status_code).validate(body)
    return body


def listed(email: str = EMAIL) -> list[Suppression]:
    return services.suppressions().get(email)


def text(response: func.HttpResponse) -> str:
    return response.get_body().decode("utf-8")


class Forms(HTMLParser):
    """The forms of a page: (method, action, {input name: value})."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((found.get("method", "get"), found.get("action", ""), {}))
        elif tag == "input" and self.forms:
            self.forms[-1][2][found.get("name", "")] = found.get("value", "")


def forms(page: str) -> list[tuple[str, str, dict[str, str]]]:
    parser = Forms()
    parser.feed(page)
    return parser.forms


def assert_page_headers(response: func.HttpResponse) -> None:
    assert response.mimetype == "text/html"
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in headers["X-Robots-Tag"]
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    page = text(response)
    # the page loads nothing: no script, no external asset; its one style is the CSP's hash
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    [style] = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp


# --- POST: the one click -----------------------------------------------------------------------


def test_a_genuine_post_unsubscribes_and_repeating_it_is_harmless(
    app_functions: dict[str, Any], token: str, document: dict[str, Any]
) -> None:
    response = post(app_functions, token)

    assert response.status_code == 200
    assert documented_json(document, "post", response) == {"unsubscribed": True}
    [entry] = listed()
    assert (entry.email, entry.reason, entry.send_id) == (EMAIL, "UNSUBSCRIBED", SEND)
    first = entry.created

    again = post(app_functions, token)
    assert again.status_code == 200
    assert json.loads(again.get_body()) == {"unsubscribed": True}
    assert [(e.reason, e.created) for e in listed()] == [("UNSUBSCRIBED", first)]


def test_a_marketing_batch_then_skips_the_address_and_a_transactional_one_does_not(
    app_functions: dict[str, Any], token: str
) -> None:
    assert post(app_functions, token).status_code == 200
    recipients = ["other@example.com", "Kim.Minsu@Example.com"]

    send = FakeSend()
    report = skipping_suppressed(send, services.suppressions(), marketing=True)(
        recipients, lambda *_: None
    )
    assert send.calls == [["other@example.com"]]
    assert report.deliveries[1].code == FailureCode.UNSUBSCRIBED

    send = FakeSend()
    skipping_suppressed(send, services.suppressions(), marketing=False)(recipients, lambda *_: None)
    assert send.calls == [recipients]


def test_the_token_is_the_authority_whatever_the_body(
    app_functions: dict[str, Any], key: str
) -> None:
    """RFC 8058 has clients post List-Unsubscribe=One-Click form-encoded; one that posts
    something else, or nothing, is honoured all the same."""
    tokens = UnsubscribeTokens(key)
    for n, (body, headers) in enumerate(
        [
            (b"", {}),
            (b'{"List-Unsubscribe": "One-Click"}', {"Content-Type": "application/json"}),
            (b"\xff\xfe garbage", {"Content-Type": "multipart/form-data; boundary=x"}),
        ]
    ):
        email = f"user{n}@example.com"
        response = post(app_functions, tokens.make(SEND, email), body, headers)
        assert response.status_code == 200, body
        assert [e.reason for e in listed(email)] == ["UNSUBSCRIBED"]


def test_a_browser_gets_a_confirmation_page(app_functions: dict[str, Any], token: str) -> None:
    response = post(app_functions, token, headers={**FORM, **BROWSER})

    assert response.status_code == 200
    assert_page_headers(response)
    page = text(response)
    assert "수신거부" in page
    assert "unsubscribed" in page.lower()
    assert "k***@example.com" in page
    assert EMAIL not in page
    assert [e.reason for e in listed()] == ["UNSUBSCRIBED"]


def bad_tokens(key: str, token: str) -> dict[str, str]:
    data = token[2:]
    middle = len(data) // 2
    swapped = "A" if data[middle] != "A" else "B"
    return {
        "altered": "u1" + data[:middle] + swapped + data[middle + 1 :],
        "truncated": token[:-6],
        "lengthened": token + "AAAA",
        "forged": UnsubscribeTokens(new_key()).make(SEND, EMAIL),
        "not a token": "hello",
        "empty": "",
        "long": "u1" + "A" * 5000,
    }


def test_a_token_that_does_not_read_is_404_and_records_nothing(
    app_functions: dict[str, Any], key: str, token: str, document: dict[str, Any]
) -> None:
    for name, bad in bad_tokens(key, token).items():
        for method in ("post", "get"):
            response = (post if method == "post" else get)(app_functions, bad)
            assert response.status_code == 404, (name, method)
            body = documented_json(document, method, response)
            assert body["message"] == "This unsubscribe link is not valid.", name
            assert body["path"] == "/api/v1/unsubscribe/{token}"  # never the token
            browser = (post if method == "post" else get)(app_functions, bad, headers=BROWSER)
            assert browser.status_code == 404, (name, method)
            assert_page_headers(browser)
            assert "Invalid link" in text(browser)
        assert listed() == [], name


def test_a_token_under_a_dropped_key_is_404(app_functions: dict[str, Any], token: str) -> None:
    """Rotation: the key that made the token was configured, then dropped."""
    services.override(unsubscribe_tokens=UnsubscribeTokens(new_key()))
    assert post(app_functions, token).status_code == 404
    assert get(app_functions, token).status_code == 404
    assert listed() == []


# --- GET: the page -----------------------------------------------------------------------------


def test_the_page_has_a_button_that_posts_one_click_and_records_nothing(
    app_functions: dict[str, Any], token: str
) -> None:
    for headers in (None, BROWSER):
        response = get(app_functions, token, headers)

        assert response.status_code == 200
        assert_page_headers(response)
        page = text(response)
        [(method, action, inputs)] = forms(page)
        assert method.lower() == "post"
        # relative: resolved against /api/v1/unsubscribe/{token}, the same URL
        assert action == token
        assert inputs == {"List-Unsubscribe": "One-Click"}
        assert 'lang="ko"' in page
        assert "수신거부" in page
        assert "Unsubscribe" in page
        assert "k***@example.com" in page
        assert EMAIL not in page
        assert "kim.minsu" not in page
    assert listed() == []


def test_an_internationalised_domain_is_shown_in_unicode(
    app_functions: dict[str, Any], key: str
) -> None:
    token = UnsubscribeTokens(key).make(SEND, "user@xn--bcher-kva.de")
    assert "u***@bücher.de" in text(get(app_functions, token))


# --- configuration, storage, logs ---------------------------------------------------------------


def test_without_keys_both_routes_answer_500_and_say_why_in_the_log_only(
    app_functions: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    token = UnsubscribeTokens(new_key()).make(SEND, EMAIL)
    with caplog.at_level(logging.ERROR):
        for response in (post(app_functions, token), get(app_functions, token)):
            assert response.status_code == 500
            body = json.loads(response.get_body())
            assert "SENDMAIL_UNSUBSCRIBE_KEYS" not in body["message"]
    assert "SENDMAIL_UNSUBSCRIBE_KEYS is not set" in caplog.text
    assert token not in caplog.text
    assert listed() == []


def test_a_storage_failure_is_a_500_and_the_click_can_be_repeated(
    app_functions: dict[str, Any], token: str, document: dict[str, Any]
) -> None:
    class Broken:
        def add(self, entry: Any) -> bool:
            raise TableUnavailable("write failed on table SendMailSuppressions (HTTP 503)")

    working = services.suppressions()
    services.override(suppressions=Broken())
    response = post(app_functions, token)
    assert response.status_code == 500
    documented_json(document, "post", response)
    assert "SendMailSuppressions" not in text(response)

    services.override(suppressions=working)
    assert post(app_functions, token).status_code == 200
    assert [e.reason for e in listed()] == ["UNSUBSCRIBED"]


def test_the_log_names_the_send_never_the_address_or_the_token(
    app_functions: dict[str, Any], key: str, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        get(app_functions, token)
        post(app_functions, token)
        post(app_functions, token)
        for bad in bad_tokens(key, token).values():
            post(app_functions, bad)
    assert SEND in caplog.text
    for secret in (EMAIL, "kim.minsu", token, token[2:40]):
        assert secret not in caplog.text


# --- the parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER["Accept"], True),
        ("text/html", True),
        ("text/*, application/json;q=0.5", True),
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html;q=0, */*", False),
        ("text/html;q=abc", False),
        ("garbage;;;,", False),
    ],
)
def test_html_is_answered_when_the_request_prefers_it(accept: str | None, html: bool) -> None:
    from api.unsubscribe import prefers_html

    assert prefers_html(accept) is html


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("kim.minsu@example.com", "k***@example.com"),
        ("a@example.com", "a***@example.com"),
        ("user@xn--bcher-kva.de", "u***@bücher.de"),
        ("user@xn--invalid-.example", "u***@xn--invalid-.example"),
    ],
)
def test_an_address_is_shown_masked(email: str, masked: str) -> None:
    from sendmail.feedback.unsubscribes import mask_address

    assert mask_address(email) == masked


def test_the_route_is_the_one_the_links_are_made_for(app_functions: dict[str, Any]) -> None:
    from api.unsubscribe import UNSUBSCRIBE_ROUTE
    from sendmail.sending import unsubscribe

    assert UNSUBSCRIBE_ROUTE == unsubscribe.UNSUBSCRIBE_ROUTE
    for name in ("unsubscribe", "unsubscribe_page"):
        trigger = app_functions[name].get_trigger()
        assert trigger.route == unsubscribe.UNSUBSCRIBE_ROUTE
        assert str(getattr(trigger.auth_level, "value", trigger.auth_level)) == "anonymous"
