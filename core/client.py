"""Who is on the other end of a request, as far as the network can tell."""

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
