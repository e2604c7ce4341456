"""Sealing the SMTP password: only a holder of the key opens it, and keys can be rotated."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sendmail.contract.errors import ServiceMisconfigured
from sendmail.sending.sealing import Sealer, SealingError, new_key


def test_a_sealed_password_opens_with_the_same_key_and_is_not_plain() -> None:
    sealer = Sealer(SecretStr(new_key()))
    token = sealer.seal(SecretStr("앱 비밀번호 app-pass"))
    assert "app-pass" not in token
    assert sealer.open(token).get_secret_value() == "앱 비밀번호 app-pass"


def test_another_key_cannot_open_it() -> None:
    token = Sealer(SecretStr(new_key())).seal(SecretStr("pw"))
    with pytest.raises(SealingError):
        Sealer(SecretStr(new_key())).open(token)


def test_a_tampered_token_is_refused() -> None:
    sealer = Sealer(SecretStr(new_key()))
    token = sealer.seal(SecretStr("pw"))
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(SealingError):
        sealer.open(tampered)


def test_rotation_new_key_first_still_opens_tokens_sealed_with_the_old_one() -> None:
    old, new = new_key(), new_key()
    token = Sealer(SecretStr(old)).seal(SecretStr("pw"))
    rotated = Sealer(SecretStr(f"{new},{old}"))
    assert rotated.open(token).get_secret_value() == "pw"
    assert Sealer(SecretStr(new)).open(rotated.seal(SecretStr("pw"))).get_secret_value() == "pw"


@pytest.mark.parametrize("keys", [None, SecretStr(""), SecretStr("not-a-fernet-key")])
def test_a_missing_or_malformed_key_is_a_configuration_error(keys: SecretStr | None) -> None:
    with pytest.raises(ServiceMisconfigured):
        Sealer(keys)


def test_a_sealed_password_expires_after_its_lifetime() -> None:
    import time

    from sendmail.sending.sealing import SEALED_LIFETIME_SECONDS

    sealer = Sealer(SecretStr(new_key()))
    token = sealer.seal(SecretStr("pw"))
    now = int(time.time())
    assert sealer.open(token, now=now + SEALED_LIFETIME_SECONDS - 60).get_secret_value() == "pw"
    with pytest.raises(SealingError):
        sealer.open(token, now=now + SEALED_LIFETIME_SECONDS + 60)
