"""Where a webhook may go: endpoint URLs and the addresses they may reach (SSRF).

Endpoints are configured by operators (``SENDMAIL_WEBHOOK_URLS``), but a URL is still a request
this service makes from inside its network on someone's say-so, and a host name is whatever its
DNS answers at the moment: a name that resolved to a public address when it was configured can
resolve to ``169.254.169.254`` (the metadata service, which hands out the app's tokens) or
``10.0.0.5`` at delivery time. So the rules are kept per attempt, on the addresses themselves:

1. **The URL** (:func:`parse_endpoint`): ``https`` with a host; ``http`` only under the
   development setting ``SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP`` and only to ``localhost`` or a
   loopback literal. No control characters or spaces anywhere. User info
   (``https://user:password@host/``) becomes HTTP Basic authorization and is never logged; a
   fragment is not sent. Any refusal is :class:`EndpointRefused`: final, not retried.
2. **The addresses** (:func:`address_refusal`): the host is resolved once per attempt (a literal
   is not resolved), and *every* address the answer holds must be public; one that is not
   refuses the attempt (a name that mixes public and internal addresses is not one to trust with
   either). Refused: private (10/8, 172.16/12, 192.168/16), loopback, link-local (169.254/16 —
   the metadata service 169.254.169.254 with it — and fe80::/10), unique-local (fc00::/7, and
   AWS's metadata fd00:ec2::254 with it), carrier-grade NAT 100.64/10 (Alibaba's metadata
   100.100.100.200 in it), multicast, reserved, unspecified, broadcast, documentation and
   benchmark ranges, IETF protocol assignments (192.0.0/24, Oracle's metadata 192.0.0.192 in
   it), Azure's platform address 168.63.129.16 (the host's DNS, health and wire server: public
   by its number, internal by its use), and anything Python's :mod:`ipaddress` does not call
   global. An IPv6 address that carries an IPv4 one — IPv4-mapped ``::ffff:a.b.c.d``, 6to4
   ``2002::/16``, NAT64 ``64:ff9b::/96`` — is judged by the IPv4 address too.
   The development setting allows loopback addresses (127/8, ::1) and nothing else besides.
3. **The connection** (:mod:`~sendmail.feedback.webhooks.delivery`) is made to an address that
   passed rule 2, never by name: nothing is looked up twice, so a DNS answer that changes
   between the check and the connection (DNS rebinding) changes nothing.

What is logged of an endpoint is :attr:`Endpoint.label` — scheme, host and port, and a short
fingerprint of the whole URL to tell endpoints on one host apart — never its path, query or
user info (a receiver's token often lives there).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves ``(host, port)`` to addresses (as text), in the order to try them.
Resolver = Callable[[str, int], Sequence[str]]

_LOOPBACK_NAMES = frozenset({"localhost"})
#: Characters a path or query keeps as they are (RFC 3986 reserved and unreserved, and ``%``).
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"

#: Refused however Python's ipaddress classifies them (its tables changed across 3.11 patch
#: releases; these do not): the ranges named in the module docs.
_REFUSED_NETWORKS: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = tuple(
    (name, ipaddress.ip_network(network))
    for name, network in (
        ("unspecified", "0.0.0.0/8"),
        ("private", "10.0.0.0/8"),
        ("carrier-grade NAT", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("private", "172.16.0.0/12"),
        ("IETF protocol assignment", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("6to4 relay", "192.88.99.0/24"),
        ("private", "192.168.0.0/16"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
        ("Azure platform", "168.63.129.16/32"),
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("IPv4-mapped", "::ffff:0:0/96"),
        ("discard", "100::/64"),
        ("IETF protocol assignment", "2001::/23"),
        ("documentation", "2001:db8::/32"),
        ("NAT64 local", "64:ff9b:1::/48"),
        ("unique-local", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("multicast", "ff00::/8"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EndpointRefused(ValueError):
    """This endpoint may not be called (the reason names no part of the URL but its host)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One configured endpoint, parsed. ``url`` and ``authorization`` never reach a repr."""

    scheme: Literal["https", "http"]
    host: str
    port: int
    #: What goes on the request line: path and query.
    target: str = field(repr=False)
    url: str = field(repr=False)
    authorization: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """A short stable name of the whole URL (for queue messages and logs)."""
        return hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:12]

    @property
    def label(self) -> str:
        """What the log may say: ``https://host[:port] #fingerprint``."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port} #{self.fingerprint}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_endpoint(url: str, *, allow_loopback_http: bool = False) -> Endpoint:
    """``url`` as an :class:`Endpoint`, or :class:`EndpointRefused` (rule 1 of the module docs)."""
    url = url.strip()
    if not url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise EndpointRefused("an endpoint URL is empty or holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as e:
        raise EndpointRefused("an endpoint URL cannot be read") from e
    if parts.scheme not in ("https", "http") or not host:
        raise EndpointRefused("an endpoint URL must be https://host/...")
    host = _ascii_host(host)
    if parts.scheme == "http" and not (allow_loopback_http and _names_loopback(host)):
        raise EndpointRefused(f"http://{host} refused: endpoints are https")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in credentials):
            raise EndpointRefused(f"an endpoint URL for {host} has control characters")
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    # Percent-encoded as browsers send it: a non-ASCII path or query stays on the request line.
    target = quote(parts.path or "/", safe=_URL_SAFE) + (
        f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else ""
    )
    return Endpoint(
        scheme="https" if parts.scheme == "https" else "http",
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
        target=target,
        url=url,
        authorization=authorization,
    )


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` may not be connected to (rule 2 of the module docs); None if it may."""
    if allow_loopback and address.is_loopback:
        return None
    for embedded in _embedded_ipv4(address):
        reason = address_refusal(embedded, allow_loopback=False)
        if reason is not None:
            return f"{reason} (embedded in {address})"
    for name, network in _REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return name
    flags = (
        ("private", address.is_private),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
        ("not global", not address.is_global),
    )
    return next((name for name, refused in flags if refused), None)


def resolve_checked(
    endpoint: Endpoint, resolver: Resolver, *, allow_loopback: bool = False
) -> list[IPAddress]:
    """The addresses to connect to, each checked; :class:`EndpointRefused` if any is refused.
    A literal host is not resolved. Resolution errors (``OSError``) propagate: they may pass."""
    literal = _literal(endpoint.host)
    if literal is not None:
        addresses = [literal]
    else:
        addresses = []
        for text in resolver(endpoint.host, endpoint.port):
            parsed = _literal(text)
            if parsed is None:
                raise EndpointRefused(f"{endpoint.host} resolved to something not an address")
            if parsed not in addresses:
                addresses.append(parsed)
        if not addresses:
            raise OSError(f"{endpoint.host} resolved to no address")
    for address in addresses:
        reason = address_refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise EndpointRefused(f"{endpoint.host} resolves to a refused address: {reason}")
    if endpoint.scheme == "http" and not all(a.is_loopback for a in addresses):
        raise EndpointRefused(f"http://{endpoint.host} resolves off this machine")
    return addresses


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host`` (``getaddrinfo``, TCP), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _literal(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _names_loopback(host: str) -> bool:
    literal = _literal(host)
    return host in _LOOPBACK_NAMES if literal is None else literal.is_loopback


def _ascii_host(host: str) -> str:
    """The host as DNS takes it (IDNA for a name that is not ASCII); scope ids are refused."""
    if "%" in host:
        raise EndpointRefused("an endpoint host may not carry an IPv6 scope")
    if host.isascii():
        return host
    import idna

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise EndpointRefused("an endpoint host is not a valid domain name") from e
