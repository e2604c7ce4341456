"""The unsubscribe token codec (sendmail/sending/unsubscribe.py): a token reads back as what it
was made for, and as nothing once any byte of it changes, under a key no longer configured, or
when it is not a token at all; it shows neither the address nor the send."""

from __future__ import annotations

import base64

import pytest

from sendmail.contract.errors import ServiceMisconfigured
from sendmail.sending.unsubscribe import (
    UNSUBSCRIBE_ROUTE,
    Unsubscribe,
    UnsubscribeTokens,
    new_key,
    unsubscribe_url,
)

SEND = "0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5"
EMAIL = "kim.minsu@example.com"
OLD, NEW = new_key(), new_key()


def raw(token: str) -> bytes:
    data = token[2:]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def encoded(data: bytes) -> str:
    return "u1" + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize(
    ("send_id", "email"),
    [
        (SEND, EMAIL),
        ("send-7", "user@xn--bcher-kva.de"),  # a send id that is not 32 hex digits
        ("", "a@b.co"),
        ("s" * 255, "x" * 64 + "@" + "d" * 60 + ".example"),
    ],
)
def test_a_token_reads_back_as_what_it_was_made_for(send_id: str, email: str) -> None:
    tokens = UnsubscribeTokens(NEW)
    token = tokens.make(send_id, email)
    assert token.startswith("u1")
    assert token.replace("_", "").replace("-", "").isalnum()  # a URL path segment as it is
    assert tokens.read(token) == Unsubscribe(send_id=send_id, email=email)


def test_a_usual_token_is_about_90_characters() -> None:
    assert 80 <= len(UnsubscribeTokens(NEW).make(SEND, EMAIL)) <= 100


def test_changing_any_byte_of_a_token_is_refused() -> None:
    tokens = UnsubscribeTokens(NEW)
    data = raw(tokens.make(SEND, EMAIL))
    for position in range(len(data)):
        for flip in (0x01, 0x80):
            altered = bytearray(data)
            altered[position] ^= flip
            assert tokens.read(encoded(bytes(altered))) is None, (position, flip)


def test_a_cut_or_lengthened_token_is_refused() -> None:
    tokens = UnsubscribeTokens(NEW)
    token = tokens.make(SEND, EMAIL)
    data = raw(token)
    for size in range(len(data)):
        assert tokens.read(encoded(data[:size])) is None, size
    assert tokens.read(encoded(data + b"\x00")) is None
    for text in (token[:-1], token[:-4], token + "A", token + "AAAA", token[2:], "u2" + token[2:]):
        assert tokens.read(text) is None, text


@pytest.mark.parametrize(
    "text",
    ["", "u1", "u1" + "A" * 60, "u1" + "=" * 60, "u1" + "A" * 59 + "/", "x" * 5000, "u1é" * 30],
)
def test_what_is_not_a_token_reads_as_nothing(text: str) -> None:
    assert UnsubscribeTokens(NEW).read(text) is None


def test_a_forged_token_made_under_another_key_is_refused() -> None:
    forged = UnsubscribeTokens(new_key()).make(SEND, EMAIL)
    assert UnsubscribeTokens(NEW).read(forged) is None


def test_a_token_under_the_old_key_reads_while_the_old_key_is_kept_second() -> None:
    before = UnsubscribeTokens(OLD).make(SEND, EMAIL)
    rotated = UnsubscribeTokens(f"{NEW}, {OLD}")
    assert rotated.read(before) == Unsubscribe(send_id=SEND, email=EMAIL)
    after = rotated.make(SEND, EMAIL)  # the first key makes tokens
    assert UnsubscribeTokens(NEW).read(after) == Unsubscribe(send_id=SEND, email=EMAIL)
    assert UnsubscribeTokens(OLD).read(after) is None
    # the old key dropped: its tokens read as unknown, like forged ones
    assert UnsubscribeTokens(NEW).read(before) is None


def test_a_token_shows_neither_the_address_nor_the_send() -> None:
    tokens = UnsubscribeTokens(NEW)
    token = tokens.make(SEND, EMAIL)
    data = raw(token)
    for clear in (EMAIL, "kim.minsu", "example.com", SEND, SEND[:8]):
        assert clear not in token
        assert clear.encode() not in data
        assert base64.urlsafe_b64encode(clear.encode()).decode()[:8] not in token
    assert bytes.fromhex(SEND) not in data


def test_two_tokens_for_the_same_recipient_and_send_differ() -> None:
    tokens = UnsubscribeTokens(NEW)
    made = {tokens.make(SEND, EMAIL) for _ in range(50)}
    assert len(made) == 50
    assert {tokens.read(token) for token in made} == {Unsubscribe(send_id=SEND, email=EMAIL)}


@pytest.mark.parametrize(
    "keys",
    [None, "", " , ", "not base64!", base64.urlsafe_b64encode(b"short").decode(), f"{NEW},bad"],
    ids=["unset", "empty", "blank", "not-base64", "short", "one-bad"],  # NEW is random: not an id
)
def test_missing_or_bad_keys_are_a_configuration_error(keys: str | None) -> None:
    with pytest.raises(ServiceMisconfigured):
        UnsubscribeTokens(keys)


def test_the_link_is_the_route_under_the_public_base_url() -> None:
    token = UnsubscribeTokens(NEW).make(SEND, EMAIL)
    assert unsubscribe_url("https://mail.example.com/", token) == (
        f"https://mail.example.com/api/v1/unsubscribe/{token}"
    )
    assert UNSUBSCRIBE_ROUTE == "v1/unsubscribe/{token}"
