"""One-click unsubscribe: what the token routes do, and the pages a person sees.

A marketing message carries ``List-Unsubscribe: <…/api/v1/unsubscribe/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058); the token
(:mod:`sendmail.sending.unsubscribe`) seals the recipient and the send. Two routes read it
(``api/unsubscribe.py``):

- ``POST`` (:func:`unsubscribe`): the one click. A mail client posts it on the recipient's
  behalf, or the confirmation page's button does. A genuine token puts its address on the
  suppression list with reason ``UNSUBSCRIBED`` (:mod:`sendmail.feedback.suppression`): later
  marketing sends skip it. **Guaranteed**: a token that does not read (malformed, altered,
  forged, or under a key no longer configured) records nothing; repeating a genuine one is
  harmless (the first entry stays, with its time). **The body is not checked**: RFC 8058 says
  clients send ``List-Unsubscribe=One-Click`` form-encoded, but the token alone is the
  authority (it cannot be made without the key), so a client that posts something else, or
  nothing, is still honoured: refusing it would leave a person subscribed who asked not to be.
- ``GET`` (:func:`preview`, :func:`confirm_page`): a page that says what will happen and has
  the button. **A GET never unsubscribes**: link scanners and mail security gateways fetch every
  link in a message.

The pages (:func:`confirm_page`, :func:`done_page`, :func:`invalid_page`) are Korean and English,
self-contained (no script, no external asset, one inline style allowed by its hash in
:data:`PAGE_HEADERS`' Content-Security-Policy), uncached, unindexed and sent without a referrer.
They show the address masked (:func:`mask_address`: ``k***@example.com``), never whole: the
page is reachable by whoever holds the link. Nothing here logs the address or the token; the
routes log the send id at most.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from datetime import UTC, datetime

from sendmail.contract.addresses import normalize_address
from sendmail.feedback.suppression import Suppression, SuppressionList
from sendmail.sending.unsubscribe import Unsubscribe, UnsubscribeTokens


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """What a genuine token's POST did."""

    send_id: str
    email: str
    #: False when the address was already unsubscribed (nothing changed).
    added: bool


def preview(tokens: UnsubscribeTokens, token: str) -> Unsubscribe | None:
    """Whom ``token`` would unsubscribe (None: not one of ours). Records nothing."""
    return tokens.read(token)


def unsubscribe(
    tokens: UnsubscribeTokens,
    suppressions: SuppressionList,
    token: str,
    *,
    now: datetime | None = None,
) -> Unsubscribed | None:
    """Put ``token``'s address on the list with reason ``UNSUBSCRIBED``; None (and nothing
    recorded) when the token is not one of ours. Storage errors are raised."""
    found = tokens.read(token)
    if found is None:
        return None
    email = normalize_address(found.email)
    entry = Suppression(
        email=email,
        reason="UNSUBSCRIBED",
        created=now or datetime.now(UTC),
        send_id=found.send_id,
    )
    return Unsubscribed(send_id=found.send_id, email=email, added=suppressions.add(entry))


def mask_address(email: str) -> str:
    """``email`` with its local part reduced to its first character: ``k***@example.com``.
    Enough for the person to recognise their address, too little for anyone else to learn it.
    An internationalised domain is shown in Unicode when it decodes."""
    local, _, domain = email.rpartition("@")
    try:
        shown = domain.encode("ascii").decode("idna")
    except (UnicodeError, ValueError):
        shown = domain
    return f"{local[:1]}***@{shown}"


_STYLE = (
    "body{font-family:system-ui,-apple-system,'Apple SD Gothic Neo','Malgun Gothic',sans-serif;"
    "margin:0;background:#f4f5f7;color:#1f2328}"
    "main{max-width:32rem;margin:10vh auto;padding:2rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    "h1{font-size:1.4rem;margin:0 0 1rem}p{line-height:1.6}.en{color:#57606a}"
    "button{font-size:1rem;padding:.7rem 1.4rem;border:0;border-radius:6px;background:#0969da;"
    "color:#fff;cursor:pointer}button:focus{outline:3px solid #54aeff}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")

#: Headers of every page: nothing loads but the one inline style, the form posts only to this
#: app, no framing, no referrer (the URL holds the token), no caching, no indexing.
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="ko">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def confirm_page(masked: str, action: str) -> str:
    """The GET page: what the button does, and the button, which posts
    ``List-Unsubscribe=One-Click`` to ``action`` (the same URL, relative)."""
    who = html.escape(masked)
    return _page(
        "수신거부 · Unsubscribe",
        "<h1>수신거부 · Unsubscribe</h1>\n"
        f"<p>{who} 주소로 광고성 메일을 더 이상 받지 않으시려면 아래 버튼을 눌러 주세요.</p>\n"
        f'<p class="en" lang="en">To stop marketing email to {who}, press the button.</p>\n'
        f'<form method="post" action="{html.escape(action)}">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        '<button type="submit">수신거부 · Unsubscribe</button>\n</form>\n'
        "<p>비밀번호 재설정 같은 서비스 안내 메일은 계속 받으실 수 있습니다.</p>\n"
        '<p class="en" lang="en">Service messages such as password resets still arrive.</p>\n',
    )


def done_page(masked: str) -> str:
    """The answer to the button: done (also when it was done before)."""
    who = html.escape(masked)
    return _page(
        "수신거부 완료 · Unsubscribed",
        "<h1>수신거부 완료 · Unsubscribed</h1>\n"
        f"<p>{who} 주소는 수신거부되었습니다. 광고성 메일을 더 이상 보내지 않습니다.</p>\n"
        f'<p class="en" lang="en">{who} is unsubscribed: no more marketing email will be '
        "sent to it.</p>\n",
    )


def invalid_page() -> str:
    """The answer for a token that does not read (404)."""
    return _page(
        "유효하지 않은 링크 · Invalid link",
        "<h1>유효하지 않은 링크 · Invalid link</h1>\n"
        "<p>이 수신거부 링크는 유효하지 않거나 만료되었습니다. 메일에 있는 링크를 그대로 "
        "사용해 주세요.</p>\n"
        '<p class="en" lang="en">This unsubscribe link is not valid or has expired. Use the link '
        "exactly as it appears in the email.</p>\n",
    )
