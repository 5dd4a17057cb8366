"""Fetching user-given URLs without reaching internal addresses (SSRF guard).

Every TCP connection the client opens goes through `GuardedBackend.connect_tcp`,
which resolves the name itself, refuses the whole name if any address it resolves
to is not public, and then connects to the address it checked (so a second DNS
answer cannot swap in an internal one). Redirects open new connections, so every
hop is checked the same way; the hop count is capped as well.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httpx
from django.conf import settings


class FetchError(Exception):
    """A fetch that failed in a way worth telling the user (their URL, their problem)."""


class BlockedAddress(FetchError):
    pass


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    """Only globally routable unicast addresses are fetched. This refuses loopback,
    RFC 1918 and ULA private ranges, link-local (169.254.0.0/16, where cloud metadata
    services answer), CGNAT, multicast, reserved and unspecified addresses."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses `host` resolves to (a literal IP resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"Could not resolve host '{host}'.") from exc
    seen: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, *, allow_loopback: bool) -> None:
        self.allow_loopback = allow_loopback

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        addresses = resolve(host, port)
        blocked = [ip for ip in addresses if not is_public_address(ip, allow_loopback=self.allow_loopback)]
        if blocked or not addresses:
            raise BlockedAddress(f"Refusing to fetch from '{host}': it resolves to a non-public address ({blocked[0] if blocked else 'none'}).")
        return super().connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(allow_loopback=allow_loopback),
            max_connections=4,
        )


@dataclass
class FetchedResponse:
    url: str
    status_code: int
    content_type: str
    headers: httpx.Headers
    body: bytes
    truncated: bool


def guarded_client(*, allow_loopback: bool | None = None) -> httpx.Client:
    if allow_loopback is None:
        allow_loopback = settings.FETCH_ALLOW_LOOPBACK
    return httpx.Client(
        transport=GuardedTransport(allow_loopback=allow_loopback),
        timeout=httpx.Timeout(settings.FETCH_TOTAL_TIMEOUT, connect=settings.FETCH_CONNECT_TIMEOUT),
        follow_redirects=True,
        max_redirects=settings.FETCH_MAX_REDIRECTS,
        headers={"User-Agent": "ai-status-backend/0.1 (+link preview)"},
        trust_env=False,
    )


def validate_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except Exception as exc:  # httpx raises several types for bad URLs
        raise FetchError(f"'{url}' is not a valid URL.") from exc
    if parsed.scheme not in {"http", "https"}:
        raise FetchError(f"Only http and https URLs can be fetched, not '{parsed.scheme}'.")
    if not parsed.host:
        raise FetchError(f"'{url}' has no host.")
    if parsed.userinfo:
        raise FetchError("URLs with credentials are not fetched.")
    return parsed


@contextmanager
def _translate_errors(url: str) -> Iterator[None]:
    try:
        yield
    except FetchError:
        raise
    except httpx.TooManyRedirects as exc:
        raise FetchError(f"Too many redirects fetching {url}.") from exc
    except httpx.TimeoutException as exc:
        raise FetchError(f"Timed out fetching {url}.") from exc
    except httpx.HTTPError as exc:
        # The guard's refusal arrives wrapped in httpx's ConnectError.
        cause = exc.__context__
        while cause is not None:
            if isinstance(cause, FetchError):
                raise cause from exc
            cause = cause.__context__
        raise FetchError(f"Could not fetch {url}: {exc.__class__.__name__}.") from exc


def fetch(url: str, *, max_bytes: int, read_bytes: int | None = None, allow_loopback: bool | None = None) -> FetchedResponse:
    """GET `url` through the guard. Reads at most `read_bytes` (default: all, up to
    `max_bytes`); a body known or seen to exceed `max_bytes` is an error. The whole
    fetch, redirects included, ends within FETCH_TOTAL_TIMEOUT."""
    validate_url(url)
    deadline = time.monotonic() + settings.FETCH_TOTAL_TIMEOUT
    limit = max_bytes if read_bytes is None else min(read_bytes, max_bytes)
    with _translate_errors(url), guarded_client(allow_loopback=allow_loopback) as client:
        with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise FetchError(f"{url} answered HTTP {response.status_code}.")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{url} is {int(declared)} bytes, over the {max_bytes}-byte limit.")
            chunks: list[bytes] = []
            received = 0
            truncated = False
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise FetchError(f"Timed out fetching {url}.")
                chunks.append(chunk)
                received += len(chunk)
                if received > limit:
                    if read_bytes is None:
                        raise FetchError(f"{url} is over the {max_bytes}-byte limit.")
                    truncated = True
                    break
            body = b"".join(chunks)[:limit]
            return FetchedResponse(
                url=str(response.url),
                status_code=response.status_code,
                content_type=response.headers.get("content-type", "").split(";", 1)[0].strip().lower(),
                headers=response.headers,
                body=body,
                truncated=truncated,
            )
