"""The docs page in a real browser: headless Chromium on ``/api/v1/docs`` of the real app.

What a person does on the page: open it, "Authorize" with the function key, "Try it out" on
``aws-send``, "Execute" — and the answer (200 with the Message-ID, or 202) shows in the page and
the mail arrives in devhost's outbox. The browser may reach nothing but the app: every request to
another host is aborted and recorded, and the test fails if there was one, so the page is proven
to work offline (Swagger UI served from the package, no CDN, no validator badge).

Chromium is Debian's (``.ci/run`` installs the ``chromium`` package), driven by Playwright's
Python package through ``executable_path``; Playwright's own browser download cannot work here.
``CHROMIUM`` names another executable. Where no Chromium exists the test is skipped with a
message saying so in capitals (pytest's ``-ra`` summary prints it) — it never passes silently.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
#: Debian's Chromium as root in a closed network: no sandbox (root), no GPU, and none of the
#: background connections (updates, sync, safe browsing) that the network would refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-quic",
]


def chromium_executable() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.skip(
        "BROWSER TEST NOT RUN: no Chromium on this machine (install Debian's 'chromium' "
        "package, as .ci/run does, or set CHROMIUM) — the docs page was NOT tested in a browser"
    )


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's executable, looked up before any devhost starts (or the loud skip)."""
    return chromium_executable()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    with real_app(tmp_path_factory.mktemp("browser-app") / "state", FAST_SES) as process:
        yield process


def outbox_message(app: DevhostProcess, recipient: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = app.request("GET", "/_dev/outbox").json()["messages"]
        found = [m for m in messages if recipient in m["to"]]
        if found:
            assert len(found) == 1
            return dict(found[0])
        time.sleep(0.2)
    raise TimeoutError(f"no mail to {recipient} in the outbox")


def test_try_it_out_on_the_docs_page_sends_mail_with_no_network_but_the_app(
    chromium: str, app: DevhostProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import Request, Response, Route, expect, sync_playwright

    app_host = urlsplit(app.base_url).netloc
    elsewhere: list[str] = []
    failed: list[str] = []
    page_errors: list[str] = []
    recipient = f"browser-{uuid.uuid4().hex[:12]}@example.com"
    request_body = {
        "senderEmail": SENDER,
        "recipientEmails": [recipient],
        "subject": "브라우저에서 보냄",
        "body": "Sent from the docs page.",
    }

    def only_the_app(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == app_host or request.url.startswith("data:"):
            route.continue_()
        else:
            elsewhere.append(request.url)
            route.abort()

    def record(response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/aws-send"):
            failed.append(f"{response.status} {response.url}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.route("**/*", only_the_app)
            page = context.new_page()
            page.on("response", record)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            try:
                page.goto(f"{app.base_url}/api/v1/docs", wait_until="networkidle")
                expect(page.locator(".swagger-ui .info .title")).to_contain_text("Send-Mail")

                # Authorize: the header scheme takes the function key
                page.locator(".auth-wrapper button.authorize").click()
                dialog = page.locator(".dialog-ux")
                header_scheme = dialog.locator("form").filter(has_text="x-functions-key")
                header_scheme.locator("input").fill(app.key)
                header_scheme.locator("button.authorize").click()
                expect(header_scheme.locator("button", has_text="Logout")).to_be_visible()
                dialog.locator("button.btn-done").first.click()

                # Try it out on aws-send, waiting like v1 (Prefer: wait=30)
                operation = page.locator("#operations-emails-aws_send")
                operation.locator(".opblock-summary").first.click()
                operation.get_by_role("button", name="Try it out").click()
                operation.locator("tr[data-param-name='Prefer'] input").fill("wait=30")
                # Swagger UI pre-fills the documented example key: a key of one's own instead
                idempotency = operation.locator("tr[data-param-name='Idempotency-Key'] input")
                if idempotency.count():
                    idempotency.fill(f"docs-page-{uuid.uuid4()}")
                operation.locator("textarea.body-param__text").fill(json.dumps(request_body))
                operation.get_by_role("button", name="Execute").click()

                answer = operation.locator(".live-responses-table tbody .response").first
                expect(answer.locator(".response-col_status")).to_have_text("200", timeout=60_000)
                shown = json.loads(
                    answer.locator(".response-col_description pre").first.inner_text()
                )
                page.screenshot(path=str(tmp_path / "docs-page.png"), full_page=True)
                curl = operation.locator(".curl-command").inner_text()
            finally:
                page.screenshot(path=str(tmp_path / "docs-page-last.png"), full_page=True)
        finally:
            browser.close()

    # the page showed the service's 200 with the Message-ID the emulated SES gave the mail
    mail = outbox_message(app, recipient)
    assert shown["messageIds"] == [mail["messageId"]], shown
    assert shown["failures"] == []
    assert (mail["subject"], mail["from"], mail["body"]) == (
        "브라우저에서 보냄",
        SENDER,
        "Sent from the docs page.",
    )
    assert "x-functions-key" in curl  # the key went in the header it was authorised for
    assert elsewhere == [], f"the page reached beyond the app: {elsewhere}"
    assert failed == [], f"assets the app did not serve: {failed}"
    assert page_errors == []
