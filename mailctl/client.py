"""The Send-Mail HTTP API as mailctl uses it: start a send, read its status, its recipients'
outcomes and its delivery events, pause, resume or cancel it.

Contract:

- **Errors are the service's words.** Any answer that is not what was asked for raises
  :class:`ServiceError` with the status and the v1 envelope's ``message`` (or, for an answer
  without one — Azure's empty 401 — a sentence saying what it means). Network failures and
  timeouts raise :class:`Unreachable`, which says whether the request may have reached the
  service (``maybe_sent``).
- **A send is idempotent.** Each send carries an ``Idempotency-Key`` derived from the request
  (:func:`idempotency_key`): re-running the same command after a dropped connection gives back
  the same send instead of mailing everyone again. The key covers what decides which mail goes
  out — route, sender, the set of recipients, subject, body, provider — and never the password.
- **What is retried, and what never is.** Status reads are retried on network errors and 5xx by
  the caller (:mod:`mailctl.watching`), since they change nothing. A send is retried
  here only when it certainly did not reach the service (connection refused, up to
  :data:`SEND_ATTEMPTS` tries) or when the service says the same key is still being processed
  (409), waiting ``Retry-After`` each time for up to :data:`KEY_BUSY_PATIENCE` seconds — long
  enough for the service to take over a key left by a request that died — then
  :class:`KeyBusy`. Both are safe. Any other failure of a send is reported, not retried: the
  operator re-runs the command, and the key makes that safe.
- **Pause, resume and cancel are retried like reads** (:meth:`Client.control`): on no answer, a
  5xx or a 429, up to :data:`CONTROL_ATTEMPTS` tries a few seconds apart — an operator stopping
  a send is waiting — because repeating one changes nothing: the service answers a call that
  already took effect with 200 and ``changed: false``. So after a try that may have reached the
  service, that ``false`` may mean the earlier try did it (:attr:`Controlled.repeated`). A 409
  (the state does not allow it) is the service's answer, never retried.
- **Pages.** :meth:`Client.recipient_pages` and :meth:`Client.event_pages` yield one page at a
  time (following ``nextCursor``), so a caller holds one page, never the send. A page read that
  meets no answer, a 5xx or a 429 is tried again (:data:`PAGE_ATTEMPTS` tries, waiting
  ``Retry-After`` or a growing pause): reads change nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx

from mailctl import __version__

KEY_HEADER = "x-functions-key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Attempts for a send that did not reach the service (connection refused).
SEND_ATTEMPTS = 4
#: Seconds a send keeps asking while the service answers 409 (another request with the same
#: Idempotency-Key is being admitted). The service takes over a key whose holder went silent only
#: after its ``TAKEOVER_AFTER`` (30 s, sendmail/admission/idempotency.py): this is that and a
#: margin, so a key left by a request that died is taken over instead of given up on. (mailctl
#: talks to the service only over HTTP, so the constant is not imported; tests check the two agree.)
KEY_BUSY_PATIENCE = 45.0
#: The shortest wait between two 409s, whatever ``Retry-After`` says.
KEY_BUSY_MIN_WAIT = 0.5
#: Events asked for per page (the service's most), and pages read at most (a loop guard).
EVENTS_PAGE = 1000
MAX_EVENT_PAGES = 10_000
#: Recipients asked for per page of ``GET /v1/emails/{id}/recipients`` (the service's most).
RECIPIENTS_PAGE = 1000
#: Tries of one page read that met no answer, a 5xx or a 429; and the longest wait between two.
PAGE_ATTEMPTS = 5
PAGE_RETRY_MAX_WAIT = 30.0
#: Tries of a pause, resume or cancel that met no answer, a 5xx or a 429; the longest wait
#: between two (waits of 1, 2 and 4 s: about 7 s besides the requests' own time).
CONTROL_ATTEMPTS = 4
CONTROL_RETRY_MAX_WAIT = 5.0
#: What ``POST /v1/emails/{id}/{action}`` takes.
CONTROL_ACTIONS = ("pause", "resume", "cancel")

Sleep = Callable[[float], None]
Clock = Callable[[], float]


class ServiceError(Exception):
    """The service answered with an error: ``status`` and the envelope's ``message``."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{status}: {message}")


class KeyBusy(ServiceError):
    """The service still answered 409 after :data:`KEY_BUSY_PATIENCE` seconds: another request
    with this Idempotency-Key is still being processed. Nothing was started by this request;
    the same request later is safe (it answers the same send)."""

    def __init__(self, message: str, waited: float) -> None:
        self.waited = waited
        super().__init__(HTTPStatus.CONFLICT, message)


class Unreachable(Exception):
    """No answer from the service. ``maybe_sent``: the request may have reached it anyway."""

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        self.maybe_sent = maybe_sent
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Status:
    """One read of ``GET /api/v1/emails/{id}``: ``done`` once the send finished (200)."""

    done: bool
    body: dict[str, Any]
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Controlled:
    """The service's answer to a pause, resume or cancel (its ``ControlResult``)."""

    id: str
    #: Where the send is now: ``scheduled``, ``running``, ``paused``, ``canceled`` …
    state: str
    #: False when the send already was as asked (nothing changed).
    changed: bool
    status_url: str
    #: An earlier try met no answer or a 5xx and may have made the change itself: an unchanged
    #: answer then does not mean the send already was as asked before this command.
    repeated: bool = False


def idempotency_key(
    route: str,
    sender: str,
    recipients: Iterable[str],
    subject: str,
    body: str,
    provider: str | None = None,
    *,
    extra: dict[str, object] | None = None,
    salt: str | None = None,
) -> str:
    """``mailctl-v2-`` and the SHA-256 of the request's substance and this installation's salt
    (75 printable ASCII chars). ``extra``: the request's other fields that were given (html,
    category, scheduledAt, metadata), so another of them is another key.

    Recipients are compared as the service compares them (case-insensitively, duplicates once)
    and sorted, so the same people from a file in another order give the same key; the service
    then answers 422 if it fingerprints order too, which also mails nobody twice. The salt
    (:func:`installation_salt`) is random per installation: a key derived from content alone
    could be predicted — and its send's answer claimed — by anyone who can guess the content.
    """
    substance: dict[str, object] = {
        "route": route,
        "sender": sender,
        "recipients": sorted(_casefolded(recipients)),
        "subject": subject,
        "body": body,
        "provider": provider,
        "salt": installation_salt() if salt is None else salt,
    }
    if extra:  # html, category, scheduledAt, metadata: only when given (older keys unchanged)
        substance["extra"] = extra
    # The SHA-256 of json.dumps(substance, ensure_ascii=False, sort_keys=True, separators=(",",
    # ":")), hashed as it is encoded: a million recipients' JSON is never held whole.
    encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256()
    for chunk in encoder.iterencode(substance):
        digest.update(chunk.encode("utf-8"))
    return "mailctl-v2-" + digest.hexdigest()


def _casefolded(addresses: Iterable[str]) -> set[str]:
    """The addresses case-folded; an address that already is keeps its own string (a list of a
    million lower-case addresses is not copied)."""
    folded: set[str] = set()
    for address in addresses:
        key = address.casefold()
        folded.add(address if key == address else key)
    return folded


#: Where the salt lives: ``$MAILCTL_SALT_FILE``, else ``$XDG_CONFIG_HOME/mailctl/salt``, else
#: ``~/.config/mailctl/salt``.
SALT_ENV = "MAILCTL_SALT_FILE"


def installation_salt(environ: Mapping[str, str] | None = None) -> str:
    """This installation's random salt, made on first use (32 random bytes, hex, mode 0600).

    Running the same command again on the same machine gives the same key (a re-run is the
    same send); another machine or user has another salt, hence other keys."""
    env = os.environ if environ is None else environ
    config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = Path(env.get(SALT_ENV) or config / "mailctl" / "salt")
    try:
        existing = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32)
    # Written whole to a private file, then linked into place: the link fails if another first
    # run got there first (its salt wins), and nobody ever reads a half-written salt.
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(fresh + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        fresh = path.read_text(encoding="ascii").strip()
    except OSError:  # no hard links on this file system: an exclusive rename-free create
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fresh = path.read_text(encoding="ascii").strip()
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(fresh + "\n")
    finally:
        draft.unlink()
    return fresh


class Client:
    """A thin client of the v1 API (one connection pool; close it, or use ``with``)."""

    def __init__(
        self,
        api_url: str,
        key: str | None,
        *,
        timeout: float = 60.0,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"mailctl/{__version__}", "Accept": "application/json"}
        if key:
            headers[KEY_HEADER] = key
        self._http = httpx.Client(
            base_url=api_url, headers=headers, timeout=timeout, transport=transport
        )
        self._sleep = sleep
        self._clock = clock

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- sending --------------------------------------------------------------------------------
    def send(self, route: str, payload: dict[str, Any], key: str) -> dict[str, Any]:
        """POST a send (``aws-send`` or ``user-send``); the service's 202 (or 200) body.

        The body includes ``id``; a 202's ``Location`` is kept as ``statusUrl`` if absent.
        """
        path = f"/v1/emails/{route}"
        started = self._clock()
        refused_connections = 0
        while True:
            try:
                response = self._http.post(path, json=payload, headers={IDEMPOTENCY_HEADER: key})
            except httpx.ConnectError as e:  # nothing reached the service: safe to try again
                refused_connections += 1
                if refused_connections >= SEND_ATTEMPTS:
                    raise Unreachable(_unreachable(self._http.base_url, e), maybe_sent=False) from e
                self._sleep(min(2.0**refused_connections, 10.0))
                continue
            except httpx.TransportError as e:  # the request may have arrived
                raise Unreachable(_unreachable(self._http.base_url, e), maybe_sent=True) from e
            if response.status_code == HTTPStatus.CONFLICT:
                # the same key is still being processed by the service: ask again shortly
                waited = self._clock() - started
                if waited >= KEY_BUSY_PATIENCE:
                    raise KeyBusy(_service_error(response).message, waited)
                wait = max(_retry_after(response) or 1.0, KEY_BUSY_MIN_WAIT)
                self._sleep(min(wait, KEY_BUSY_PATIENCE - waited))
                continue
            if response.status_code in (HTTPStatus.OK, HTTPStatus.ACCEPTED):
                body = _json_object(response)
                if "statusUrl" not in body and "Location" in response.headers:
                    body["statusUrl"] = response.headers["Location"]
                return body
            raise _service_error(response)

    # --- control ----------------------------------------------------------------------------------
    def control(self, send_id: str, action: str) -> Controlled:
        """``POST /v1/emails/{id}/{action}`` (pause, resume or cancel): the answer, once the
        service answered 200; tried again on no answer, 5xx and 429 (see the module docstring).
        A 404 (unknown id) or 409 (not allowed in the send's state) raises
        :class:`ServiceError` with the service's message."""
        if action not in CONTROL_ACTIONS:
            raise ValueError(f"no such action: {action!r}")
        path = f"/v1/emails/{urllib.parse.quote(send_id, safe='')}/{action}"
        repeated = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.post(path)
            except httpx.TransportError as e:
                reached = not isinstance(e, httpx.ConnectError)
                if attempt >= CONTROL_ATTEMPTS:
                    raise Unreachable(
                        _unreachable(self._http.base_url, e), maybe_sent=repeated or reached
                    ) from e
                repeated = repeated or reached
                self._sleep(min(2.0 ** (attempt - 1), CONTROL_RETRY_MAX_WAIT))
                continue
            if response.status_code == HTTPStatus.OK:
                body = _json_object(response)
                return Controlled(
                    id=str(body.get("id") or send_id),
                    state=str(body.get("state") or "?"),
                    changed=bool(body.get("changed")),
                    status_url=str(body.get("statusUrl") or ""),
                    repeated=repeated,
                )
            error = _service_error(response)
            transient = error.status >= 500 or error.status == HTTPStatus.TOO_MANY_REQUESTS
            if not transient or attempt >= CONTROL_ATTEMPTS:
                raise error
            repeated = repeated or error.status >= 500
            self._sleep(min(error.retry_after or 2.0 ** (attempt - 1), CONTROL_RETRY_MAX_WAIT))

    # --- reading ----------------------------------------------------------------------------------
    def status(self, send_id: str) -> Status:
        response = self._get(f"/v1/emails/{send_id}")
        if response.status_code in (HTTPStatus.OK, HTTPStatus.ACCEPTED):
            return Status(
                response.status_code == HTTPStatus.OK,
                _json_object(response),
                _retry_after(response),
            )
        raise _service_error(response)

    def recipient_pages(
        self, send_id: str, *, limit: int = RECIPIENTS_PAGE
    ) -> Iterator[list[dict[str, Any]]]:
        """The send's recipients with their outcomes, in request order, a page at a time
        (``GET /v1/emails/{id}/recipients``, following ``nextCursor``). Any error answer —
        a 404 too: the status said the route exists — raises :class:`ServiceError`."""
        params = {"limit": str(limit)}
        seen: set[str] = set()
        while True:
            body = self._page(f"/v1/emails/{send_id}/recipients", params)
            page = body.get("recipients")
            if not isinstance(page, list):
                raise ServiceError(HTTPStatus.OK, "the service answered a page without recipients")
            yield [item for item in page if isinstance(item, dict)]
            cursor = body.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                return
            if cursor in seen:  # a loop guard: a service that answers the same page forever
                raise ServiceError(HTTPStatus.OK, "the service gave the same nextCursor twice")
            seen.add(cursor)
            params = {"limit": str(limit), "cursor": cursor}

    def event_pages(self, send_id: str) -> Iterator[list[dict[str, Any]]]:
        """The send's delivery events, a page at a time (``GET /v1/emails/{id}/events``); none
        where the service has none (404: a service without the events route)."""
        params = {"limit": str(EVENTS_PAGE)}
        for _ in range(MAX_EVENT_PAGES):
            body = self._page(f"/v1/emails/{send_id}/events", params, missing_ok=True)
            page = body.get("events")
            if isinstance(page, list):
                yield [event for event in page if isinstance(event, dict)]
            cursor = body.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                return
            params = {"limit": str(EVENTS_PAGE), "cursor": cursor}

    def _page(
        self, url: str, params: dict[str, str], *, missing_ok: bool = False
    ) -> dict[str, Any]:
        """One page's body; tried again on no answer, 5xx and 429 (see the module docstring).
        With ``missing_ok`` a 404 is an empty body."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._get(url, params=params)
            except Unreachable:
                if attempt >= PAGE_ATTEMPTS:
                    raise
                self._sleep(min(2.0**attempt, PAGE_RETRY_MAX_WAIT))
                continue
            if response.status_code == HTTPStatus.OK:
                return _json_object(response)
            if missing_ok and response.status_code == HTTPStatus.NOT_FOUND:
                return {}
            error = _service_error(response)
            transient = error.status >= 500 or error.status == HTTPStatus.TOO_MANY_REQUESTS
            if not transient or attempt >= PAGE_ATTEMPTS:
                raise error
            self._sleep(min(error.retry_after or 2.0**attempt, PAGE_RETRY_MAX_WAIT))

    def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            return self._http.get(url, params=params)
        except httpx.TransportError as e:
            raise Unreachable(_unreachable(self._http.base_url, e), maybe_sent=False) from e


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as e:
        raise ServiceError(response.status_code, "the service answered without JSON") from e
    if not isinstance(body, dict):
        raise ServiceError(response.status_code, "the service answered an unexpected body")
    return body


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _service_error(response: httpx.Response) -> ServiceError:
    """The envelope's message, or what the status means when there is no envelope."""
    status = response.status_code
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    if not message:
        message = _WITHOUT_ENVELOPE.get(status) or _reason(status)
    return ServiceError(status, message, _retry_after(response))


_WITHOUT_ENVELOPE = {
    401: "the function key was refused or missing: pass --key or set MAILCTL_KEY",
    404: "not found: check --url (the app's base URL) and the send id",
}


def _reason(status: int) -> str:
    try:
        return f"{HTTPStatus(status).phrase} (HTTP {status})"
    except ValueError:
        return f"HTTP {status}"


def _unreachable(base: httpx.URL, error: Exception) -> str:
    kind = type(error).__name__
    return f"no answer from {base} ({kind}: {error or 'no details'})"
