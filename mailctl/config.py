"""Where the service is and which key to present: flags first, then the environment, then the
defaults of a local ``make run``.

- URL: ``--url``, else ``MAILCTL_URL``, else ``http://127.0.0.1:7071`` (devhost's default). The
  base of the app (``https://<app>.azurewebsites.net``); a trailing ``/api`` is accepted too.
  It must be an ``http://`` or ``https://`` URL with a host, else :class:`BadURL`.
- Key: ``--key``, else ``MAILCTL_KEY``, else the local host's key file ``.devhost/function-key``
  in the current directory or in the checkout mailctl runs from — only for a loopback URL
  (``localhost`` or a loopback IP address, not a name that merely starts with ``127.``), so a
  local key is never sent elsewhere. No key at all is allowed (the service then answers 401, and
  mailctl says where a key comes from).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:7071"
URL_ENV = "MAILCTL_URL"
KEY_ENV = "MAILCTL_KEY"
#: Where ``make run`` (devhost) keeps its generated function key, relative to the app dir.
DEVHOST_KEY_FILE = Path(".devhost") / "function-key"
_CHECKOUT = Path(__file__).resolve().parent.parent


class BadURL(ValueError):
    """The service's URL is not an ``http(s)://host`` URL."""


@dataclass(frozen=True, slots=True)
class Config:
    base_url: str
    key: str | None
    key_source: str

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"


def resolve(
    url: str | None,
    key: str | None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    env = os.environ if environ is None else environ
    source = "--url" if url else URL_ENV if env.get(URL_ENV) else "the default URL"
    base = (url or env.get(URL_ENV) or DEFAULT_URL).strip().rstrip("/")
    _check_url(base, source)
    if base.endswith("/api"):
        base = base[: -len("/api")]
    if key:
        return Config(base, key.strip(), "--key")
    if env.get(KEY_ENV):
        return Config(base, env[KEY_ENV].strip(), KEY_ENV)
    if not is_loopback(base):
        return Config(base, None, "none")
    for folder in dict.fromkeys([cwd or Path.cwd(), _CHECKOUT]):
        path = folder / DEVHOST_KEY_FILE
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text:
            return Config(base, text, str(path))
    return Config(base, None, "none")


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost`` or a loopback IP address."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name (127.0.0.1.nip.io resolves wherever its owner says)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _check_url(url: str, source: str) -> None:
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError as e:
        raise BadURL(f"{source} {url!r} is not a URL ({e})") from e
    if parts.scheme.lower() not in {"http", "https"} or not host:
        raise BadURL(
            f"{source} {url!r} is not an http:// or https:// URL with a host "
            "(e.g. https://<app>.azurewebsites.net)"
        )
