"""Where a webhook may be sent: public http(s) addresses only, unless private ones are allowed.

A URL is checked when it is given (a literal private address is refused at once) and again when
each delivery connects: the resolver hands the HTTP client only addresses that pass, so a name
that resolves to a private address (or starts to, between two lookups) is never connected to.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from tornado.netutil import DefaultLoopResolver, Resolver

MAX_URL_LENGTH = 2048


class RefusedDestination(ValueError):
    """The URL is not one a webhook may be sent to; the message says why."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_private: bool) -> str:
    """The URL if a webhook may go there as far as can be told without a lookup; else RefusedDestination."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise RefusedDestination(f"a webhook URL is an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedDestination(f"the webhook URL is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedDestination("a webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise RefusedDestination("a webhook URL must not carry credentials; use the signature to trust it")
    if port == 0:
        raise RefusedDestination("the webhook URL's port must not be 0")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url  # a name: checked when it is resolved, at each delivery
    if not allow_private and not is_public(str(literal)):
        raise RefusedDestination(
            f"webhooks are not sent to private, loopback or link-local addresses ({parts.hostname})"
        )
    return url


class PublicOnlyResolver(Resolver):
    """Resolves as usual, then keeps only public addresses (all of them if private ones are allowed)."""

    def initialize(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        self._resolver = DefaultLoopResolver()

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        addresses = await self._resolver.resolve(host, port, family)
        if self.allow_private:
            return addresses
        allowed = [(af, address) for af, address in addresses if is_public(address[0])]
        if not allowed:
            raise RefusedDestination(f"{host} resolves only to private, loopback or link-local addresses")
        return allowed

    def close(self) -> None:
        self._resolver.close()
