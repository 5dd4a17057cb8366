"""Who is on the other end of a request, as far as the network can tell: its address,
and the client identity that limits are counted by."""

import ipaddress
from typing import Any

from django.conf import settings


def client_address(request: Any) -> str:
    """The client's IP address: the socket's peer (REMOTE_ADDR), or, behind
    TRUSTED_PROXY_COUNT reverse proxies of our own, the address the outermost of them
    saw. Each proxy appends the address it received the request from to
    X-Forwarded-For, so that one is the entry TRUSTED_PROXY_COUNT places from the
    right; everything left of it is the client's to write and never read.

    A header with fewer entries than there are proxies (a request that did not come
    through all of them), or an entry that is not an address, gives the peer: a value
    a client can choose must never be taken for its address. `request` is a Django
    HttpRequest or a DRF Request."""
    peer = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return peer
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def client_identity(request: Any) -> str:
    """Who the client is, for everything that counts or limits per client (the
    throttles, login failures, anonymous viewers, open requests): its address
    (client_address), except that an IPv6 address stands for its whole
    /CLIENT_IPV6_PREFIX network. One IPv6 customer is routinely given a /64, 2^64
    addresses to rotate through: counted per address, they would be 2^64 clients. An
    IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an
    IPv4 client) is that IPv4 address, counted alone as every IPv4 address is."""
    return identity_of(client_address(request))


def identity_of(address: str) -> str:
    """client_identity for an address already known; anything that is not an IP
    address (a Unix socket's empty peer) is its own identity."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, settings.CLIENT_IPV6_PREFIX), strict=False))
    return str(ip)


class ScopeRequest:
    """What this module reads of a request (its META: the peer and X-Forwarded-For),
    from an ASGI scope, for the layers in front of Django."""

    def __init__(self, scope: Any) -> None:
        client = scope.get("client") or ("", 0)
        self.META = {"REMOTE_ADDR": client[0] or ""}
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                self.META["HTTP_X_FORWARDED_FOR"] = value.decode("latin-1")
