"""Fetching user-given URLs without reaching internal addresses (SSRF guard).

Every TCP connection the client opens goes through `GuardedBackend.connect_tcp`,
which resolves the name itself, refuses the whole name if any address it resolves
to is not public, and then connects to the address it checked (so a second DNS
answer cannot swap in an internal one). Redirects open new connections, so every
hop is checked the same way; the hop count is capped as well.

One wall-clock deadline covers the whole fetch: resolving, connecting, TLS, the
request, the headers and the body, over every redirect. httpx's timeouts are per
socket operation, so a server that sends its headers a byte at a time never trips
them; here every socket operation gets at most the time left.

What the user is told names no exception, address or port: a failure to reach the
link is "Could not fetch the link." whatever the cause (refused, timed out, not
public, not resolvable), so the fetcher cannot be used to map a network. The
details go to the server log.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

# What the user reads when the link could not be reached, whatever the reason.
COULD_NOT_FETCH = "Could not fetch the link."


class FetchError(Exception):
    """A fetch that failed. Its message is what the user reads: it never names an
    exception, a resolved address or a port (those are logged where it is raised)."""


class BlockedAddress(FetchError):
    """The link resolves to an address that is not fetched (see is_public_address)."""

    def __init__(self) -> None:
        super().__init__(COULD_NOT_FETCH)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 forms that carry an IPv4 address and reach it: IPv4-compatible (::a.b.c.d,
# deprecated, but a dual-stack host may still route it to IPv4), the NAT64 well-known
# prefix (RFC 6052: a NAT64 gateway turns it into a connection to the IPv4 address)
# and 6to4 (RFC 3056). IPv4-mapped (::ffff:a.b.c.d) is ipaddress's `ipv4_mapped`.
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# Refused whatever they carry: local-use NAT64 (RFC 8215) translates into a network
# of the operator's choosing; Teredo (RFC 4380) tunnels to an obfuscated client
# address; site-local (RFC 3879, deprecated) is a private range that ipaddress does
# not count as private.
NEVER_PUBLIC_V6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
    ipaddress.IPv6Network("fec0::/10"),
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that
    reach IPv4 (mapped, compatible, NAT64, 6to4); None otherwise."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in IPV4_COMPATIBLE or ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    """Only globally routable unicast addresses are fetched. This refuses loopback,
    RFC 1918 and ULA private ranges, link-local (169.254.0.0/16, where cloud metadata
    services answer), CGNAT, multicast, reserved and unspecified addresses, and the
    same behind any IPv6 form that carries an IPv4 address (see embedded_ipv4);
    plus the IPv6 ranges of NEVER_PUBLIC_V6."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_loopback:
            return allow_loopback
        if any(ip in network for network in NEVER_PUBLIC_V6) or ip.is_site_local:
            return False
        carried = embedded_ipv4(ip)
        if carried is not None:
            # Judged as the IPv4 address it reaches; a 6to4 address must also pass as
            # IPv6 below (ipaddress's registry counts all of 2002::/16 as non-global).
            if not is_public_address(carried, allow_loopback=allow_loopback):
                return False
            if ip.sixtofour is None:
                return True
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast


class Deadline:
    """The wall-clock end of one fetch, shared by every socket operation of it."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, timeout: float | None = None) -> float:
        """The time an operation may take: its own timeout, but never past the deadline.
        Raises httpcore.ReadTimeout (httpx's TimeoutException) once it has passed."""
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise httpcore.ReadTimeout("the fetch's total time limit has passed")
        return remaining if timeout is None else min(timeout, remaining)


# One of socket.getaddrinfo's answers: family, type, protocol, canonical name, address.
_AddressInfo = tuple[
    socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]
]


def resolve(host: str, port: int, deadline: Deadline | None = None) -> list[IPAddress]:
    """All addresses `host` resolves to (a literal IP resolves to itself). With a
    deadline, the lookup is abandoned when it passes: getaddrinfo has no timeout of
    its own, and a slow authoritative server is the link submitter's to control. The
    lookup's thread ends when the system resolver gives up."""
    outcome: list[list[_AddressInfo] | OSError] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            outcome.append(exc)

    if deadline is None:
        lookup()
    else:
        worker = threading.Thread(target=lookup, name="fetch-resolve", daemon=True)
        worker.start()
        worker.join(deadline.left())
        if not outcome:
            logger.info("Fetch: resolving %r outlasted the fetch's time limit", host)
            raise FetchError(COULD_NOT_FETCH)
    result = outcome[0]
    if isinstance(result, OSError):
        logger.info("Fetch: could not resolve %r: %s", host, result)
        raise FetchError(COULD_NOT_FETCH) from result
    seen: list[IPAddress] = []
    for *_, sockaddr in result:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.left(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> DeadlineStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, self.deadline.left(timeout))
        return DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, *, allow_loopback: bool, deadline: Deadline | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port, self.deadline)
        blocked = [ip for ip in addresses if not is_public_address(ip, allow_loopback=self.allow_loopback)]
        if blocked or not addresses:
            logger.info("Fetch refused: %r resolves to a non-public address (%s)", host, blocked[0] if blocked else "none")
            raise BlockedAddress()
        if self.deadline is not None:
            timeout = self.deadline.left(timeout)
        stream = super().connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)
        return stream if self.deadline is None else DeadlineStream(stream, self.deadline)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, allow_loopback: bool, deadline: Deadline | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(allow_loopback=allow_loopback, deadline=deadline),
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


def guarded_client(*, allow_loopback: bool | None = None, deadline: Deadline | None = None) -> httpx.Client:
    if allow_loopback is None:
        allow_loopback = settings.FETCH_ALLOW_LOOPBACK
    return httpx.Client(
        transport=GuardedTransport(allow_loopback=allow_loopback, deadline=deadline),
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
        raise  # its message is for the user; where it was raised logged why
    except httpx.TooManyRedirects as exc:
        raise FetchError(f"Too many redirects fetching {url}.") from exc
    except httpx.HTTPError as exc:
        # The guard's refusal arrives wrapped in httpx's ConnectError.
        cause = exc.__context__
        while cause is not None:
            if isinstance(cause, FetchError):
                raise cause from exc
            cause = cause.__context__
        # Refused, reset, timed out, TLS or protocol trouble: one answer for all, so
        # that the answer does not map the network; the log has the reason.
        logger.info("Fetch of %s failed: %s: %s", url, type(exc).__name__, exc)
        raise FetchError(COULD_NOT_FETCH) from exc


# Told the bytes read so far and the body's declared length (None when not sent).
ReadProgress = Callable[[int, int | None], None]


def fetch(
    url: str, *, max_bytes: int, read_bytes: int | None = None, allow_loopback: bool | None = None,
    on_read: ReadProgress | None = None,
) -> FetchedResponse:
    """GET `url` through the guard. Reads at most `read_bytes` (default: all, up to
    `max_bytes`); a body known or seen to exceed `max_bytes` is an error. The whole
    fetch, redirects included, ends within FETCH_TOTAL_TIMEOUT (a wall-clock deadline
    over every socket operation, see Deadline). `on_read` hears after each chunk how
    much of the body has been read (a caller shows it as progress)."""
    validate_url(url)
    deadline = Deadline(settings.FETCH_TOTAL_TIMEOUT)
    limit = max_bytes if read_bytes is None else min(read_bytes, max_bytes)
    with (
        _translate_errors(url),
        guarded_client(allow_loopback=allow_loopback, deadline=deadline) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code >= 400:
            raise FetchError(f"{url} answered HTTP {response.status_code}.")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"{url} is {int(declared)} bytes, over the {max_bytes}-byte limit.")
        chunks: list[bytes] = []
        received = 0
        truncated = False
        total = int(declared) if declared and declared.isdigit() else None
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            received += len(chunk)
            if on_read is not None:
                on_read(received, total)
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
