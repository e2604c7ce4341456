"""Validation of the v1 request bodies: every rule, with the message a caller reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sendmail.contract.errors import Forbidden, ValidationFailed
from sendmail.contract.models import (
    PLATFORM_MAX_REQUEST_BYTES,
    AwsEmailRequest,
    Limits,
    UserEmailRequest,
    check_address,
    parse_request,
)
from sendmail.contract.text import LINE_BREAK_CHARACTERS
from sendmail.sending.mime import ensure_single_line

LIMITS = Limits(max_recipients=5, max_subject_chars=20, max_body_bytes=30)


def aws(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": ["a@example.com", "b@example.com"],
        "subject": "Hello",
        "body": "Hi there",
    }
    body.update(overrides)
    return body


def user(**overrides: Any) -> dict[str, Any]:
    body = aws(senderEmail="me@gmail.com", provider="GMAIL", password="app-pass")
    body.update(overrides)
    return body


def parse(model: Any, body: Any, limits: Limits = LIMITS) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(model, raw, limits)


def problem(model: Any, body: Any, limits: Limits = LIMITS) -> str:
    with pytest.raises(ValidationFailed) as info:
        parse(model, body, limits)
    return info.value.message


def test_a_valid_request_is_parsed_and_unknown_fields_are_ignored() -> None:
    request = parse(AwsEmailRequest, aws(cc=["x@example.com"], priority=1))
    assert request.recipientEmails == ["a@example.com", "b@example.com"]
    assert not hasattr(request, "cc")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "Validation failed: the request body must be valid UTF-8 JSON"),
        (b"", "Validation failed: the request body must be a JSON object"),
        (b"[1, 2]", "Validation failed: the request body must be a JSON object"),
        (b"\xff\xfe", "Validation failed: the request body must be valid UTF-8 JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes, expected: str) -> None:
    assert problem(AwsEmailRequest, raw) == expected


@pytest.mark.parametrize("field", ["senderEmail", "recipientEmails", "subject", "body"])
def test_each_required_field_is_named_when_missing(field: str) -> None:
    body = aws()
    del body[field]
    assert problem(AwsEmailRequest, body) == f"Validation failed: {field} is required"


def test_every_problem_is_reported_at_once() -> None:
    message = problem(AwsEmailRequest, {"subject": 3})
    assert message == (
        "Validation failed: senderEmail is required; recipientEmails is required; "
        "subject must be a string; body is required"
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"senderEmail": "not-an-address"}, "senderEmail must be a valid email address"),
        ({"senderEmail": ""}, "senderEmail must be a valid email address"),
        (
            {"senderEmail": "se@aifactory.page\r\nBcc: x@evil.test"},
            "senderEmail must not contain line breaks",
        ),
        ({"senderEmail": " se@aifactory.page"}, "senderEmail must be a valid email address"),
        ({"recipientEmails": []}, "recipientEmails must not be empty"),
        ({"recipientEmails": "a@example.com"}, "recipientEmails must be an array of strings"),
        ({"recipientEmails": ["a@example.com", 7]}, "recipientEmails[1] must be a string"),
        (
            {"recipientEmails": ["a@example.com", "bad", "also bad"]},
            "recipientEmails[1] must be a valid email address (1 more invalid)",
        ),
        (
            {"recipientEmails": ["a@example.com\n"]},
            "recipientEmails[0] must not contain line breaks",
        ),
        ({"subject": ""}, "subject must not be empty"),
        ({"subject": "   "}, "subject must not be blank"),
        ({"subject": "Hi\r\nBcc: x@evil.test"}, "subject must not contain line breaks"),
        ({"subject": "x" * 21}, "subject must be at most 20 characters"),
        ({"body": ""}, "body must not be empty"),
        ({"body": "가" * 11}, "body must be at most 30 bytes in UTF-8"),
        (
            {"recipientEmails": [f"r{i}@example.com" for i in range(6)]},
            "recipientEmails must contain at most 5 distinct addresses (got 6)",
        ),
    ],
)
def test_rule_violations_name_the_field_and_the_problem(
    overrides: dict[str, Any], expected: str
) -> None:
    assert problem(AwsEmailRequest, aws(**overrides)) == f"Validation failed: {expected}"


def test_limits_are_counted_in_characters_for_the_subject() -> None:
    assert parse(AwsEmailRequest, aws(subject="가" * 20)).subject == "가" * 20


def test_duplicates_are_dropped_case_insensitively_keeping_the_first_spelling() -> None:
    request = parse(
        AwsEmailRequest,
        aws(
            recipientEmails=[
                "Ann@Example.com",
                "bob@example.com",
                "ann@example.com",
                "BOB@example.com",
            ]
        ),
    )
    assert request.recipientEmails == ["Ann@Example.com", "bob@example.com"]


def test_the_recipient_cap_counts_distinct_addresses() -> None:
    many = ["same@example.com"] * 10  # twice the cap of 5: the most entries read at all
    assert parse(AwsEmailRequest, aws(recipientEmails=many)).recipientEmails == ["same@example.com"]


def test_more_than_twice_the_cap_in_entries_is_refused_duplicates_included() -> None:
    """A list is refused by its length before any address is looked at (the security review's
    1.7 million copies of one address held a worker for 29 s)."""
    with pytest.raises(ValidationFailed) as caught:
        parse(AwsEmailRequest, aws(recipientEmails=["same@example.com"] * 11))
    assert "at most 10 entries, duplicates included (got 11)" in str(caught.value)


def test_a_sender_not_allowed_is_refused_before_any_recipient_is_validated() -> None:
    checked: list[str] = []

    def refuse(sender: str) -> None:
        checked.append(sender)
        raise Forbidden("not allowed")

    body = json.dumps(aws(recipientEmails=["not an address"] * 5)).encode()
    with pytest.raises(Forbidden):
        parse_request(AwsEmailRequest, body, LIMITS, admit_sender=refuse)
    assert checked == ["se@aifactory.page"]


def test_an_invalid_sender_is_a_400_not_a_sender_check() -> None:
    body = json.dumps(aws(senderEmail="nobody")).encode()
    with pytest.raises(ValidationFailed):
        parse_request(AwsEmailRequest, body, LIMITS, admit_sender=pytest.fail)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError inside json
        b'{"recipientEmails": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"senderEmail": ' + b"9" * 5_000 + b"}",  # ValueError: int longer than 4,300 digits
        b'{"a": 1}\xff',
    ],
    ids=["deep", "deep-field", "huge-int", "bad-utf8"],
)
def test_json_that_crashes_json_loads_is_a_validation_failure(raw: bytes) -> None:
    roomy = Limits(max_recipients=50_000, max_subject_chars=20, max_body_bytes=30)
    with pytest.raises(ValidationFailed, match="valid UTF-8 JSON"):
        parse_request(AwsEmailRequest, raw, roomy)


def test_an_internationalised_domain_and_its_ascii_form_are_one_address() -> None:
    """Both reach the same mailbox (SES and SMTP get the ASCII form:
    sendmail.contract.addresses)."""
    request = parse(AwsEmailRequest, aws(recipientEmails=["ann@bücher.de", "Ann@XN--BCHER-KVA.de"]))
    assert request.recipientEmails == ["ann@bücher.de"]


def test_the_cap_counts_addresses_that_only_look_alike_folded_as_distinct() -> None:
    """casefold (the cheap count before the checks) makes straße.de strasse.de; IDNA keeps them
    apart (two domains), so the list is counted again after the checks."""
    with pytest.raises(ValidationFailed, match=r"at most 1 distinct addresses \(got 2\)"):
        parse(
            AwsEmailRequest,
            aws(recipientEmails=["a@straße.de", "a@strasse.de"]),
            Limits(max_recipients=1, max_subject_chars=20, max_body_bytes=30),
        )


def test_template_looking_text_is_kept_literally() -> None:
    request = parse(AwsEmailRequest, aws(subject="{{name}}", body="Dear {{name}}"))
    assert (request.subject, request.body) == ("{{name}}", "Dear {{name}}")


def test_user_send_takes_provider_and_password() -> None:
    request = parse(UserEmailRequest, user(), Limits(100, 998, 1000))
    assert request.provider.value == "GMAIL"
    assert request.password.get_secret_value() == "app-pass"
    assert "app-pass" not in repr(request)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"provider": "YAHOO"}, "provider must be one of GMAIL, NAVER, KAKAO"),
        ({"provider": None}, "provider must be one of GMAIL, NAVER, KAKAO"),
        ({"password": ""}, "password must not be empty"),
        ({"password": "  "}, "password must not be blank"),
        ({"password": 1234}, "password must be a string"),
    ],
)
def test_user_send_rules(overrides: dict[str, Any], expected: str) -> None:
    assert problem(UserEmailRequest, user(**overrides)) == f"Validation failed: {expected}"


@pytest.mark.parametrize("line_break", list(LINE_BREAK_CHARACTERS), ids=lambda c: f"U+{ord(c):04X}")
def test_every_line_break_the_mail_builder_refuses_is_refused_in_the_subject(
    line_break: str,
) -> None:
    # Found by fuzzing: "\x85" or "\u2028" in a subject passed validation (202), then the SMTP
    # activity refused to build the message on every retry and the send ended as BATCH_FAILED.
    subject = f"Hello{line_break}there"
    with pytest.raises(ValueError, match="line breaks"):
        ensure_single_line("subject", subject)
    assert problem(AwsEmailRequest, aws(subject=subject)) == (
        "Validation failed: subject must not contain line breaks"
    )
    assert problem(AwsEmailRequest, aws(recipientEmails=[f"a{line_break}@example.com"])) == (
        "Validation failed: recipientEmails[0] must not contain line breaks"
    )


def test_unpaired_surrogates_are_refused_in_every_text_field() -> None:
    # Found by fuzzing: "\ud800" is valid JSON but no valid UTF-8; in the password (a
    # SecretStr) it got through validation and sealing the password raised: a 500.
    message = problem(
        UserEmailRequest,
        user(password="app\ud800pass", subject="Hi\udfff", body="\ud800"),
    )
    assert message == (
        "Validation failed: subject must be valid Unicode text; "
        "body must be valid Unicode text; password must be valid Unicode text"
    )
    assert "app" not in message


def test_a_non_ascii_password_is_accepted() -> None:
    request = parse(UserEmailRequest, user(password="비밀번호 pässwörd"))
    assert request.password.get_secret_value() == "비밀번호 pässwörd"


def test_user_send_caps_recipients_at_one_hundred() -> None:
    from sendmail.contract.models import USER_SEND_MAX_RECIPIENTS
    from sendmail.platform.settings import Settings

    limits = Limits.for_user(Settings())
    ok = [f"r{i}@example.com" for i in range(USER_SEND_MAX_RECIPIENTS)]
    assert len(parse(UserEmailRequest, user(recipientEmails=ok), limits).recipientEmails) == 100
    message = problem(UserEmailRequest, user(recipientEmails=[*ok, "one@more.com"]), limits)
    assert message.endswith("at most 100 distinct addresses (got 101)")


def test_a_validation_error_never_echoes_the_password() -> None:
    message = problem(UserEmailRequest, user(password="s3cr3t-value", senderEmail="bad"))
    assert "s3cr3t-value" not in message


def test_an_oversized_body_is_refused_before_parsing() -> None:
    limits = Limits(max_recipients=2, max_subject_chars=10, max_body_bytes=10)
    raw = json.dumps(aws(body="x" * limits.max_request_bytes)).encode()
    with pytest.raises(ValidationFailed) as info:
        parse_request(AwsEmailRequest, raw, limits)
    assert info.value.message == (
        f"Validation failed: the request body must be at most {limits.max_request_bytes} bytes"
    )


#: An address as long as an address may be (254 characters; its domain of four labels).
LONGEST_ADDRESS = "a" * 64 + "@" + ("b" * 63 + ".") * 2 + "c" * 57 + ".com"


def body_at_every_limit(limits: Limits, recipients: list[str]) -> bytes:
    body = aws(
        recipientEmails=recipients,
        subject="가" * limits.max_subject_chars,
        body="나" * (limits.max_body_bytes // 3),
    )
    return json.dumps(body).encode()  # ensure_ascii: every Korean character escaped


@pytest.mark.parametrize("route", ["user-send", "aws-send of 50,000"])
def test_a_body_at_every_limit_is_within_the_request_size(route: str) -> None:
    """Every field at its limit, the longest addresses included: the size check never refuses
    a valid send (below the platform's limit, which is not reached here)."""
    from sendmail.platform.settings import Settings

    if route == "user-send":
        limits = Limits.for_user(Settings())
    else:
        limits = Limits.for_aws(Settings(SENDMAIL_SES_MAX_RECIPIENTS=50_000))
    assert limits.max_request_bytes < PLATFORM_MAX_REQUEST_BYTES
    addresses = [f"{i:05d}{LONGEST_ADDRESS[5:]}" for i in range(limits.max_recipients)]
    assert {len(a) for a in addresses} == {254}
    assert check_address(addresses[-1]) == addresses[-1]
    assert len(body_at_every_limit(limits, addresses)) <= limits.max_request_bytes


def test_a_million_recipients_meet_the_platforms_request_limit() -> None:
    """At the default aws-send limit (1,000,000 recipients) every field at its limit would
    outgrow what the Functions host accepts (100 MiB), so the size check is capped there: a
    million typical addresses (about 30 bytes each), with the subject and the body at their
    limits, still fit."""
    from sendmail.platform.settings import Settings

    limits = Limits.for_aws(Settings())
    assert limits.max_recipients == 1_000_000
    # 254-character addresses alone would need about 260 MB: the cap applies
    assert 260 * limits.max_recipients > PLATFORM_MAX_REQUEST_BYTES
    assert limits.max_request_bytes == PLATFORM_MAX_REQUEST_BYTES
    typical = [f"customer.{i:07d}@mail.example.com" for i in range(limits.max_recipients)]
    assert {len(a) for a in typical} == {33}
    raw = body_at_every_limit(limits, typical)
    assert len(raw) <= limits.max_request_bytes
    assert len(raw) < PLATFORM_MAX_REQUEST_BYTES // 2  # with room for longer addresses too


def test_a_body_over_the_platforms_limit_is_refused_before_parsing() -> None:
    limits = Limits(1_000_000, 998, 102_400)
    raw = b" " * (PLATFORM_MAX_REQUEST_BYTES + 1)  # not even JSON: never read
    with pytest.raises(ValidationFailed) as info:
        parse_request(AwsEmailRequest, raw, limits)
    assert info.value.message == (
        f"Validation failed: the request body must be at most {PLATFORM_MAX_REQUEST_BYTES} bytes"
    )


def test_too_many_recipients_are_refused_before_each_address_is_checked() -> None:
    many = [f"not-an-address-{i}" for i in range(6)]
    assert problem(AwsEmailRequest, aws(recipientEmails=many)) == (
        "Validation failed: recipientEmails must contain at most 5 distinct addresses (got 6)"
    )


def test_commas_are_counted_before_the_parse_and_a_valid_body_always_passes() -> None:
    """A valid body has at most one comma per entry and per character of its text: one that
    has more is refused before the JSON parser (which holds the GIL) ever sees it."""
    limits = Limits(max_recipients=2, max_subject_chars=10, max_body_bytes=10)
    full = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": ["a@example.com", "b@example.com"] * 2,  # every entry allowed
        "subject": "," * 10,
        "body": "," * 10,
    }
    raw = json.dumps(full).encode()
    assert raw.count(b",") <= limits.max_commas
    assert len(parse_request(AwsEmailRequest, raw, limits).addresses) == 2

    padded = raw.replace(b'"subject"', b'"x": [' + b"0," * limits.max_commas + b'0], "subject"')
    with pytest.raises(ValidationFailed, match="at most 4 entries"):
        parse_request(AwsEmailRequest, padded, limits)


def _outcome(address: str) -> tuple[str, str] | str:
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        return type(e).__name__ + ": " + str(e)
    return checked.normalized, checked.ascii_domain


DOMAIN_CORPUS = [
    "example.com",
    "EXAMPLE.com",
    "sub.example.co.kr",
    "bücher.de",
    "BÜCHER.de",
    "\uff45xample.com",  # full-width e: UTS #46 maps it
    "xn--bcher-kva.de",
    "例え.テスト",
    "a" * 63 + ".com",
    "a" * 64 + ".com",  # a label too long
    "example..com",
    "-example.com",
    "example.com.",
    "localhost",
    "[127.0.0.1]",
    "exa mple.com",
    "example.c",
    "ex_ample.com",
    "münchen.xn--p1ai",
]


@pytest.mark.parametrize("domain", DOMAIN_CORPUS)
def test_cached_domain_checks_answer_as_email_validator_does(
    domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each distinct domain is checked once per process (sendmail/contract/addresses.py); the
    answers, valid or not, are email-validator's own, the first time and from the cache."""
    import importlib

    module = importlib.import_module("email_validator.validate_email")
    cached = module.validate_email_domain_name
    addresses = [f"user@{domain}", f"Other.Name+tag@{domain}"]
    with_cache = [[_outcome(a) for a in addresses] for _ in range(2)]  # filled, then hit
    monkeypatch.setattr(module, "validate_email_domain_name", cached.__wrapped__)
    without = [_outcome(a) for a in addresses]
    assert with_cache == [without, without]


def test_email_validator_still_checks_domains_through_the_cached_function() -> None:
    """If email-validator stopped looking the function up in its module's globals, the cache
    would silently do nothing: this fails instead."""
    import importlib

    module = importlib.import_module("email_validator.validate_email")
    cached = module.validate_email_domain_name
    before = cached.cache_info()
    for n in range(5):
        check_address(f"someone{n}@cache-check.example")
    after = cached.cache_info()
    assert after.hits >= before.hits + 4
    assert after.misses <= before.misses + 1
