"""Personalised requests (``recipients`` with variables), ``html`` and ``category``: what admission
accepts and the 400 a caller reads — before anything is stored or started."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sendmail.contract.errors import ValidationFailed
from sendmail.contract.models import AwsEmailRequest, Limits, UserEmailRequest, parse_request

LIMITS = Limits(max_recipients=5, max_subject_chars=60, max_body_bytes=200, max_html_bytes=100)


def aws(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "senderEmail": "se@aifactory.page",
        "recipients": [
            {"email": "minsu@example.com", "variables": {"name": "김민수", "points": 1200}},
            {"email": "jiwoo@example.com", "variables": {"name": "이지우"}},
        ],
        "subject": "{{ name }}님, 12월 소식",
        "body": '안녕하세요 {{ name }}님, 포인트 {{ points | default("0") }}점',
    }
    body.update(overrides)
    return body


def parse(body: Any, model: Any = AwsEmailRequest) -> Any:
    return parse_request(model, json.dumps(body).encode(), LIMITS)


def problem(body: Any, model: Any = AwsEmailRequest) -> str:
    with pytest.raises(ValidationFailed) as info:
        parse(body, model)
    return info.value.message


def test_a_personalised_request_keeps_each_recipients_values_as_text():
    request = parse(aws())

    assert request.personalised
    assert request.addresses == ["minsu@example.com", "jiwoo@example.com"]
    assert request.list_entries() == [
        ("minsu@example.com", {"name": "김민수", "points": "1200"}),
        ("jiwoo@example.com", {"name": "이지우"}),
    ]
    assert request.category == "transactional"


def test_a_variable_missing_without_a_default_is_400_naming_it_and_a_recipient():
    body = aws(
        recipients=[
            {"email": "a@example.com", "variables": {"name": "A"}},
            {"email": "b@example.com"},
        ]
    )

    assert problem(body) == (
        "Validation failed: recipients[1] (b@example.com) has no value for 'name', which "
        "subject uses without a default"
    )


def test_duplicates_keep_the_first_entry_and_its_values():
    body = aws(
        recipients=[
            {"email": "A@example.com", "variables": {"name": "first"}},
            {"email": "a@example.com", "variables": {"name": "second"}},
        ]
    )

    assert parse(body).list_entries() == [("A@example.com", {"name": "first"})]


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 10**7 }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{{ name.__class__.__mro__ }}",
        "{{ range(10) }}",
        "{{ name | upper }}",
        "{{ name ~ name }}",
        "{{ cycler.__init__.__globals__ }}",
        "{# comment #}",
        "{{ name",
        "name }}",
    ],
)
def test_anything_beyond_variables_and_defaults_is_refused_at_admission(template):
    message = problem(aws(body=template))

    assert message.startswith("Validation failed: body: ")


def test_a_syntax_error_in_html_names_the_html():
    assert problem(aws(html="<p>{% if x %}</p>")).startswith("Validation failed: html: tags")


def test_with_recipient_emails_template_looking_text_is_sent_literally():
    body = aws(recipients=None, recipientEmails=["a@example.com"], body="{% for x in y %}{{ x }}")
    del body["recipients"]

    request = parse(body)

    assert not request.personalised
    assert request.body == "{% for x in y %}{{ x }}"
    assert request.list_entries() == ["a@example.com"]


def test_exactly_one_list_is_given():
    both = aws(recipientEmails=["a@example.com"])
    neither = aws()
    del neither["recipients"]

    assert problem(both) == "Validation failed: give recipientEmails or recipients, not both"
    assert problem(neither) == "Validation failed: recipientEmails is required"


def test_unsubscribe_url_belongs_to_marketing_mail():
    body = aws(body="Leave: {{ unsubscribe_url }}")

    assert "only marketing sends have" in problem(body)
    assert parse({**body, "category": "marketing"}).marketing


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"unsubscribe_url": "x"}, "'unsubscribe_url' is given by the service"),
        ({"1st": "x"}, "is not a variable name"),
        ({"name": True}, "a value must be a string or a number"),
        ({"name": {"nested": 1}}, "name: a value must be a string or a number"),
        ({f"v{i}": "x" for i in range(51)}, "at most 50 variables"),
        ({"name": "x" * 2001}, "at most 2000 characters"),
    ],
)
def test_variables_are_validated(variables, expected):
    body = aws(recipients=[{"email": "a@example.com", "variables": {"name": "n", **variables}}])
    if "name" in variables and not isinstance(variables["name"], str):
        body["recipients"][0]["variables"] = variables

    assert expected in problem(body)


def test_html_is_limited_like_the_body():
    assert "html must be at most 100 bytes in UTF-8" in problem(aws(html="가" * 34))
    assert parse(aws(html="<p>{{ name }}</p>")).html == "<p>{{ name }}</p>"


def test_category_is_transactional_or_marketing():
    assert parse(aws(category="marketing")).category == "marketing"
    assert "category" in problem(aws(category="newsletter"))


def test_user_send_takes_html_and_recipients_but_has_no_category():
    body = aws(
        provider="GMAIL", password="app-pass", html="<p>{{ name }}</p>", category="marketing"
    )

    request = parse(body, UserEmailRequest)

    assert request.personalised
    assert request.html == "<p>{{ name }}</p>"
    assert not request.marketing  # a person's own mail: never marketing, no unsubscribe
    assert not hasattr(request, "category")


def test_too_many_personalised_entries_are_refused_before_validation():
    entries = [{"email": f"r{i}@example.com"} for i in range(11)]

    assert problem(aws(recipients=entries)) == (
        "Validation failed: recipients must contain at most 10 entries, duplicates included "
        "(got 11)"
    )
