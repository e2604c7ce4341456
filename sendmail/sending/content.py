"""One recipient's message: the send's content rendered for them, and what marketing mail carries.

:class:`MessageMaker` is made once per batch from the send's stored :class:`~sendmail.sending.jobs.
Mail` and gives each recipient's :class:`~sendmail.sending.mime.MailParts`:

- **Personalised sends** (``recipients`` in the request): subject, body and html are templates
  (:mod:`sendmail.contract.templates`), compiled once here and rendered with the recipient's
  values — HTML-escaped in the HTML part, never in the subject or the text. A rendered subject
  with a line break, or a part over its limit (``SENDMAIL_MAX_SUBJECT_CHARS``,
  ``SENDMAIL_MAX_BODY_BYTES`` for the text, ``SENDMAIL_MAX_HTML_BYTES`` for the HTML), is
  :class:`RenderFailed`: that recipient fails ``RENDER_FAILED`` and is never sent. Admission
  already refused a template or a missing value, so nothing else can fail here.
- **Other sends** (``recipientEmails``): the text goes out as it is, as in v1 — ``{{ name }}``
  included.
- **Marketing** (``category: marketing``), on top of either:
  - ``List-Unsubscribe: <{SENDMAIL_PUBLIC_BASE_URL}/api/v1/unsubscribe/{token}>`` (and
    ``<mailto:{SENDMAIL_UNSUBSCRIBE_MAILTO}?subject=unsubscribe>`` when set) and
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, exactly as RFC 8058 section 3.1 writes
    them. Each is one line, never folded: some DKIM signers break on a folded
    ``List-Unsubscribe``; a line stays far under RFC 5322's 998 characters. SES signs the
    headers it is given with the domain's DKIM key, as RFC 8058 section 4 requires;
  - the token (:mod:`sendmail.sending.unsubscribe`) is made per recipient: the address and the
    send, encrypted; ``{{ unsubscribe_url }}`` in a personalised template is that link;
  - a part that does not use ``{{ unsubscribe_url }}`` itself — every part of a send that is not
    personalised — gets ``SENDMAIL_UNSUBSCRIBE_FOOTER`` appended (in the HTML part as a
    paragraph before ``</body>``, the link a link);
  - a subject that does not start with ``SENDMAIL_MARKETING_SUBJECT_PREFIX`` (``(광고)``) gets it
    and a space in front.
"""

from __future__ import annotations

import html as html_escaping
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sendmail.contract.addresses import normalize_address
from sendmail.contract.errors import ServiceMisconfigured
from sendmail.contract.models import UNSUBSCRIBE_URL
from sendmail.contract.templates import (
    RenderError,
    Template,
    TemplateError,
    Variable,
    compile_template,
)
from sendmail.contract.text import has_line_break
from sendmail.platform.settings import Settings
from sendmail.sending.jobs import Mail
from sendmail.sending.mime import MailParts
from sendmail.sending.unsubscribe import UnsubscribeTokens, unsubscribe_url

#: RFC 8058 section 3.1: the POST body a mail client sends, and so the header's only value.
ONE_CLICK = "List-Unsubscribe=One-Click"
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class RenderFailed(Exception):
    """This recipient's message cannot be made (the message says why, with no value in it)."""


@dataclass(frozen=True, slots=True)
class _Part:
    template: Template
    #: The footer goes after this part (marketing, and the part has no unsubscribe link).
    footer: bool


class MessageMaker:
    """Makes each recipient's message of one send (see the module docs). Thread-safe."""

    def __init__(
        self,
        mail: Mail,
        send_id: str,
        settings: Settings,
        tokens: UnsubscribeTokens | None = None,
    ) -> None:
        self.mail = mail
        self.send_id = send_id
        self.marketing = mail.category == "marketing"
        self._max_subject = settings.SENDMAIL_MAX_SUBJECT_CHARS
        self._max_text = settings.SENDMAIL_MAX_BODY_BYTES
        self._max_html = settings.SENDMAIL_MAX_HTML_BYTES
        self._prefix = settings.SENDMAIL_MARKETING_SUBJECT_PREFIX if self.marketing else ""
        self._base_url = settings.SENDMAIL_PUBLIC_BASE_URL or ""
        self._mailto = settings.SENDMAIL_UNSUBSCRIBE_MAILTO
        self._tokens = tokens
        if self.marketing and (tokens is None or not self._base_url):
            raise ServiceMisconfigured(
                "marketing mail needs SENDMAIL_PUBLIC_BASE_URL and SENDMAIL_UNSUBSCRIBE_KEYS"
            )
        self._footer = footer_template(settings) if self.marketing else None
        compile_ = compile_template if mail.personalised else _literal
        self._subject = compile_(mail.subject)
        self._text = self._part(compile_(mail.body))
        self._html = None if mail.html is None else self._part(compile_(mail.html))
        self.literal = not mail.personalised and not self.marketing
        self._fixed = MailParts(mail.subject, mail.body, mail.html) if self.literal else None

    def _part(self, template: Template) -> _Part:
        return _Part(template, self.marketing and UNSUBSCRIBE_URL not in template.names)

    def parts(self, recipient: str, values: Mapping[str, str] | None = None) -> MailParts:
        """``recipient``'s message; :class:`RenderFailed` when it cannot be made."""
        if self._fixed is not None:
            return self._fixed  # one object for every recipient: its parts are encoded once
        values = dict(values or {})
        headers: tuple[tuple[str, str], ...] = ()
        link = ""
        if self.marketing:
            assert self._tokens is not None
            token = self._tokens.make(self.send_id, normalize_address(recipient))
            link = unsubscribe_url(self._base_url, token)
            values[UNSUBSCRIBE_URL] = link
            targets = f"<{link}>"
            if self._mailto:
                targets += f", <mailto:{self._mailto}?subject=unsubscribe>"
            headers = (("List-Unsubscribe", targets), ("List-Unsubscribe-Post", ONE_CLICK))
        try:
            subject = self._subject.render(values, max_chars=self._max_subject)
            text = self._text.template.render(values)
            html = (
                None if self._html is None else self._html.template.render(values, escape_html=True)
            )
        except RenderError as e:
            raise RenderFailed(str(e)) from None
        if has_line_break(subject):
            raise RenderFailed("the rendered subject holds a line break")
        if _utf8_length_over(text, self._max_text):
            raise RenderFailed(f"the rendered body is larger than {self._max_text} bytes")
        if html is not None and _utf8_length_over(html, self._max_html):
            raise RenderFailed(f"the rendered html is larger than {self._max_html} bytes")
        if self._prefix and not subject.startswith(self._prefix):
            subject = f"{self._prefix} {subject}"
        if self._footer is not None:
            if self._text.footer:
                text += self._footer.render({UNSUBSCRIBE_URL: link})
            if html is not None and self._html is not None and self._html.footer:
                html = _with_html_footer(html, _html_footer(self._footer, link))
        return MailParts(subject, text, html, headers)


def footer_template(settings: Settings) -> Template:
    """``SENDMAIL_UNSUBSCRIBE_FOOTER`` compiled; it must use ``{{ unsubscribe_url }}`` and
    nothing else (a configuration error otherwise)."""
    try:
        template = compile_template(settings.SENDMAIL_UNSUBSCRIBE_FOOTER, field="footer")
    except TemplateError as e:
        raise ServiceMisconfigured(f"SENDMAIL_UNSUBSCRIBE_FOOTER: {e}") from None
    if template.names != {UNSUBSCRIBE_URL}:
        raise ServiceMisconfigured(
            "SENDMAIL_UNSUBSCRIBE_FOOTER must use {{ unsubscribe_url }} and no other variable"
        )
    return template


def _utf8_length_over(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes in UTF-8 (encoded only when it might:
    a character takes at most 4 bytes)."""
    return len(text) * 4 > limit and len(text.encode("utf-8")) > limit


def _literal(text: str) -> Template:
    """Text sent as it is: a template of one literal part (v1's behaviour)."""
    return Template((text,))


def _html_footer(footer: Template, link: str) -> str:
    """The footer as an HTML paragraph: its text escaped, line breaks kept, the link a link."""
    lines: list[str] = []
    for part in footer.parts:
        if isinstance(part, Variable):
            url = html_escaping.escape(link, quote=True)
            lines.append(f'<a href="{url}">{url}</a>')
        else:
            lines.append(html_escaping.escape(part, quote=False).replace("\n", "<br>\n"))
    inner = "".join(lines).strip()
    # the text footer's leading blank lines and signature separator ("--") are for text only
    while inner.startswith(("<br>", "--<br>")):
        inner = inner.partition("<br>")[2].lstrip()
    return f'<p style="font-size:12px;color:#666666">{inner}</p>'


def _with_html_footer(document: str, footer: str) -> str:
    ends = list(_BODY_END.finditer(document))
    if not ends:
        return f"{document}\n{footer}"
    at = ends[-1].start()
    return f"{document[:at]}{footer}\n{document[at:]}"
