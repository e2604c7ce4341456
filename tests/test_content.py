"""Each recipient's message (sendmail/sending/content.py): rendering, and what marketing mail
carries — RFC 8058's headers, the footer only where the template has no link, the subject prefix."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from sendmail.contract.errors import ServiceMisconfigured
from sendmail.platform.settings import Settings
from sendmail.sending.content import MessageMaker, RenderFailed
from sendmail.sending.jobs import Mail
from sendmail.sending.mime import compose
from sendmail.sending.unsubscribe import UnsubscribeTokens, new_key

SENDER = "se@aifactory.page"
BASE = "https://mail.example.com"
KEY = new_key()


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "SENDMAIL_PUBLIC_BASE_URL": BASE,
        "SENDMAIL_UNSUBSCRIBE_KEYS": KEY,
        **overrides,
    }
    return Settings(**values)


def maker(mail: Mail, **overrides: Any) -> MessageMaker:
    config = settings(**overrides)
    tokens = UnsubscribeTokens(config.SENDMAIL_UNSUBSCRIBE_KEYS)
    return MessageMaker(mail, "0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e", config, tokens)


def mail(**fields: Any) -> Mail:
    return Mail(**{"sender": SENDER, "subject": "Hello", "body": "Body", **fields})


def received(parts: Any, recipient: str = "minsu@example.com") -> EmailMessage:
    raw = compose(SENDER, recipient, parts, message_id=None)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_send_that_is_neither_personalised_nor_marketing_is_one_fixed_message():
    made = maker(mail(subject="{{ name }}님", body="안녕 {{ name }}"))

    first, second = made.parts("a@example.com"), made.parts("b@example.com")

    assert first is second  # encoded once for everyone
    assert (first.subject, first.text, first.headers) == ("{{ name }}님", "안녕 {{ name }}", ())


def test_personalised_values_are_escaped_in_html_and_never_in_text_or_subject():
    made = maker(
        mail(
            subject="{{ name }}님께",
            body="안녕하세요 {{ name }}님",
            html="<p>안녕하세요 {{ name }}님</p>",
            personalised=True,
        )
    )

    parts = made.parts("a@example.com", {"name": '<b>"김"&</b>'})

    assert parts.subject == '<b>"김"&</b>님께'
    assert parts.text == '안녕하세요 <b>"김"&</b>님'
    assert parts.html == "<p>안녕하세요 &lt;b&gt;&quot;김&quot;&amp;&lt;/b&gt;님</p>"


def test_a_default_is_used_when_the_recipient_has_no_value():
    made = maker(mail(body='안녕하세요 {{ name | default("회원") }}님', personalised=True))

    assert made.parts("a@example.com", {}).text == "안녕하세요 회원님"
    assert made.parts("a@example.com", {"name": "민수"}).text == "안녕하세요 민수님"


@pytest.mark.parametrize("value", ["a\r\nBcc: x@evil.example", "a\nb", "a\u2028b"])
def test_a_rendered_subject_with_a_line_break_is_refused_for_that_recipient(value):
    made = maker(mail(subject="Hi {{ name }}", personalised=True))

    with pytest.raises(RenderFailed, match="line break"):
        made.parts("a@example.com", {"name": value})
    assert made.parts("b@example.com", {"name": "ok"}).subject == "Hi ok"


def test_a_rendered_part_over_its_limit_is_refused():
    made = maker(
        mail(body="{{ v }}", html="<p>{{ v }}</p>", personalised=True),
        SENDMAIL_MAX_BODY_BYTES=100,
        SENDMAIL_MAX_HTML_BYTES=50,
    )

    with pytest.raises(RenderFailed, match="body is larger than 100"):
        made.parts("a@example.com", {"v": "가" * 40})  # 120 bytes in UTF-8
    with pytest.raises(RenderFailed, match="html is larger than 50"):
        made.parts("a@example.com", {"v": "<" * 20})  # escaped: 80 bytes


def test_marketing_headers_are_exactly_rfc_8058s():
    made = maker(mail(category="marketing"))

    parts = made.parts("Minsu@Example.com")
    message = received(parts)

    (link,) = [value for name, value in parts.headers if name == "List-Unsubscribe"]
    assert link.startswith(f"<{BASE}/api/v1/unsubscribe/u1")
    assert link.endswith(">")
    assert message["List-Unsubscribe"] == link
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = compose(SENDER, "minsu@example.com", parts, message_id=None)
    # each header one unfolded line (a folded List-Unsubscribe breaks some DKIM signers)
    assert f"\r\nList-Unsubscribe: {link}\r\n".encode() in raw
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


def test_the_link_names_the_recipient_and_the_send_only_encrypted():
    made = maker(mail(category="marketing"))

    parts = made.parts("Minsu@Example.com")

    link = parts.headers[0][1].strip("<>")
    token = link.rsplit("/", 1)[1]
    assert "minsu" not in link.lower()
    assert "0f1c2d3e" not in link
    found = UnsubscribeTokens(KEY).read(token)
    assert found is not None
    assert (found.email, found.send_id) == ("minsu@example.com", "0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e")


def test_a_mailto_is_offered_when_configured():
    made = maker(mail(category="marketing"), SENDMAIL_UNSUBSCRIBE_MAILTO="unsub@aifactory.page")

    value = made.parts("a@example.com").headers[0][1]

    assert value.endswith(", <mailto:unsub@aifactory.page?subject=unsubscribe>")


def test_the_footer_is_appended_only_where_the_template_has_no_link():
    made = maker(
        mail(
            body="Hi {{ name }}. Leave: {{ unsubscribe_url }}",
            html="<html><body><p>Hi {{ name }}</p></body></html>",
            category="marketing",
            personalised=True,
        )
    )

    parts = made.parts("a@example.com", {"name": "민수"})

    link = parts.headers[0][1].strip("<>")
    assert parts.text == f"Hi 민수. Leave: {link}"  # its own link: no footer
    assert parts.html is not None
    assert parts.html.count(link) == 4  # the footer's two lines: each link's href and text
    footer_at = parts.html.index("수신거부")
    assert parts.html.index("<p>Hi 민수</p>") < footer_at < parts.html.index("</body>")


def test_a_send_that_is_not_personalised_gets_the_footer_in_every_part():
    made = maker(
        mail(body="{{ unsubscribe_url }} is sent literally", html="<p>x</p>", category="marketing")
    )

    parts = made.parts("a@example.com")

    link = parts.headers[0][1].strip("<>")
    assert parts.text.startswith("{{ unsubscribe_url }} is sent literally\n\n--\n")
    assert parts.text.endswith(f"To stop receiving these emails, unsubscribe: {link}")
    assert parts.html is not None
    assert parts.html.startswith('<p>x</p>\n<p style="font-size:12px;color:#666666">더 이상')
    assert f'<a href="{link}">' in parts.html


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("12월 소식", "(광고) 12월 소식"), ("(광고) 12월 소식", "(광고) 12월 소식")],
)
def test_the_marketing_subject_gets_the_prefix_once(subject, expected):
    assert maker(mail(subject=subject, category="marketing")).parts("a@x.com").subject == expected


def test_an_empty_prefix_setting_adds_nothing_and_transactional_mail_gets_no_prefix():
    marketing = maker(
        mail(subject="소식", category="marketing"), SENDMAIL_MARKETING_SUBJECT_PREFIX=""
    )
    transactional = maker(mail(subject="비밀번호 재설정"))

    assert marketing.parts("a@x.com").subject == "소식"
    assert transactional.parts("a@x.com").subject == "비밀번호 재설정"
    assert transactional.parts("a@x.com").headers == ()


def test_marketing_without_its_settings_is_a_configuration_error():
    with pytest.raises(ServiceMisconfigured):
        MessageMaker(mail(category="marketing"), "id", Settings(), None)
    with pytest.raises(ServiceMisconfigured, match="FOOTER"):
        maker(mail(category="marketing"), SENDMAIL_UNSUBSCRIBE_FOOTER="no link here")
