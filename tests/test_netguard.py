"""Fetching user-given URLs never reaches internal addresses."""

import ipaddress
import logging
import socket
import threading
import time

import pytest

from core.netguard import COULD_NOT_FETCH, BlockedAddress, FetchError, fetch, is_public_address

MAX = 1_000_000


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "10.255.1.2", "172.16.0.5", "192.168.1.1", "169.254.169.254",
     "100.64.0.1", "0.0.0.0", "224.0.0.1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # noqa: S104 - an address the guard must refuse, not one bound
     # IPv6 forms that reach an internal IPv4 address: NAT64 (well-known prefix),
     # IPv4-compatible, 6to4; and ranges refused whatever they carry: local-use
     # NAT64, Teredo, site-local.
     "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "::10.0.0.1", "::127.0.0.1", "::169.254.169.254",
     "2002:a00:1::1", "2002:7f00:1::1", "64:ff9b:1::808:808", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "fec0::1",
     "feff::1"],
)
def test_internal_addresses_are_not_public(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_global_addresses_are_public(address):
    """Including an IPv6 form of a public IPv4 address (what a NAT64 network resolves names to)."""
    assert is_public_address(ipaddress.ip_address(address))


def test_loopback_is_allowed_only_when_the_setting_says_so():
    assert is_public_address(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert not is_public_address(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)


def test_a_loopback_url_is_refused_by_default(http_server, settings):
    settings.FETCH_ALLOW_LOOPBACK = False
    http_server.routes["/"] = (200, {"Content-Type": "text/html"}, b"<p>secret</p>")
    with pytest.raises(BlockedAddress):
        fetch(http_server.url("/"), max_bytes=MAX)
    assert http_server.requests == []


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[fd00::1]/", "http://0.0.0.0/"])
def test_private_and_metadata_addresses_are_refused_before_connecting(url, monkeypatch):
    def no_connections(*args, **kwargs):
        raise AssertionError("the guard must refuse before any connection is attempted")

    monkeypatch.setattr(socket, "create_connection", no_connections)
    with pytest.raises(BlockedAddress):
        fetch(url, max_bytes=MAX)


def test_a_redirect_to_a_private_address_is_refused(http_server, allow_loopback_fetch, monkeypatch):
    http_server.routes["/hop"] = (302, {"Location": "http://10.1.2.3/admin"}, b"")
    real_create_connection = socket.create_connection

    def only_loopback(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"connected to {address[0]}"
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", only_loopback)
    with pytest.raises(BlockedAddress):
        fetch(http_server.url("/hop"), max_bytes=MAX)
    assert http_server.requests == ["/hop"]


def test_a_dns_name_resolving_to_a_private_address_is_refused(monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "intranet.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", 80))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connection attempted"))
    with pytest.raises(BlockedAddress):
        fetch("http://intranet.example.test/", max_bytes=MAX)


def test_a_nat64_address_of_an_internal_host_is_refused_before_connecting(monkeypatch):
    """On a NAT64 network a name can resolve to 64:ff9b::a00:1, which the gateway turns
    into a connection to 10.0.0.1."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::a00:1", port, 0, 0))])
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connection attempted"))
    with pytest.raises(BlockedAddress):
        fetch("http://nat64.example.test/", max_bytes=MAX)


@pytest.mark.parametrize("case", ["non-public", "unresolvable", "refused", "private via dns"])
def test_an_unreachable_link_is_one_message_naming_no_address_or_exception(case, monkeypatch, caplog):
    """The answer must not tell a refused port from a blocked or unknown host, nor name
    the address a name resolved to: the fetcher would map the network for anyone. The
    server log keeps the reason."""
    if case == "non-public":
        url = "http://127.0.0.1:6379/"
    elif case == "unresolvable":
        url = "http://no-such-host.invalid/"
    elif case == "private via dns":
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", port))])
        url = "http://intranet.example.test/"
    else:  # a public-looking name whose port refuses: only the refusal differs
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port))])
        monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(ConnectionRefusedError(111, "Connection refused")))
        url = "http://refusing.example.test:81/"
    with caplog.at_level(logging.INFO, logger="core.netguard"), pytest.raises(FetchError) as caught:
        fetch(url, max_bytes=MAX)
    assert str(caught.value) == COULD_NOT_FETCH
    assert caplog.records, "the reason is logged for the operator"
    if case == "private via dns":
        assert "10.20.30.40" in caplog.text and "10.20.30.40" not in str(caught.value)
    if case == "refused":
        assert "Connect" in caplog.text


def test_a_server_sending_its_headers_slowly_is_cut_off_at_the_total_limit(settings, allow_loopback_fetch):
    """httpx's timeouts are per read: a server that sends a header byte every 0.2 s never
    trips them. The total limit is a wall-clock deadline over connect, headers and body."""
    settings.FETCH_TOTAL_TIMEOUT = 1.5
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200 + b"\r\nContent-Length: 2\r\n\r\nok":
                if stop.is_set():
                    return
                try:
                    connection.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as caught:
            fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/", max_bytes=MAX)
    finally:
        stop.set()
        listener.close()
    elapsed = time.monotonic() - started
    assert str(caught.value) == COULD_NOT_FETCH
    assert elapsed < 1.5 + 1.0, f"the fetch held on for {elapsed:.1f} s against a 1.5 s limit"


def test_a_slow_name_resolution_counts_against_the_total_limit(settings, monkeypatch):
    """getaddrinfo has no timeout of its own; the link's owner controls their DNS server."""
    settings.FETCH_TOTAL_TIMEOUT = 1.0

    def slow_resolver(host, port, *args, **kwargs):
        time.sleep(4)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port))]

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connection attempted"))
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^Could not fetch the link\.$"):
        fetch("http://slow-dns.example.test/", max_bytes=MAX)
    assert time.monotonic() - started < 2.0


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch):
    def resolver(host, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.10", 80))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connection attempted"))
    with pytest.raises(BlockedAddress):
        fetch("http://mixed.example.test/", max_bytes=MAX)


@pytest.mark.parametrize("url", ["ftp://example.com/file", "file:///etc/passwd", "gopher://example.com/", "http://user:pw@example.com/"])
def test_only_plain_http_and_https_urls_are_fetched(url):
    with pytest.raises(FetchError):
        fetch(url, max_bytes=MAX)


def test_a_body_over_the_size_cap_is_refused(http_server, allow_loopback_fetch):
    http_server.routes["/big"] = (200, {"Content-Type": "text/html"}, b"x" * 5000)
    with pytest.raises(FetchError, match="limit"):
        fetch(http_server.url("/big"), max_bytes=1000)


def test_too_many_redirects_are_refused(http_server, allow_loopback_fetch):
    http_server.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(FetchError, match="redirects"):
        fetch(http_server.url("/loop"), max_bytes=MAX)


def test_a_public_page_on_allowed_loopback_is_fetched(http_server, allow_loopback_fetch):
    http_server.routes["/page"] = (200, {"Content-Type": "text/html; charset=utf-8"}, b"<p>hello</p>")
    page = fetch(http_server.url("/page"), max_bytes=MAX)
    assert page.status_code == 200
    assert page.content_type == "text/html"
    assert page.body == b"<p>hello</p>"


@pytest.mark.django_db(transaction=True)
def test_the_make_run_stack_refuses_a_link_to_loopback_and_says_nothing_of_why(http_server, monkeypatch):
    """`make run` (scripts/run_stack.sh) once turned FETCH_ALLOW_LOOPBACK on, so a link to
    127.0.0.1 read local services. Its worker must refuse, with the generic message."""
    from django.conf import settings
    from knox.models import AuthToken

    from contents.services import channel_create
    from tests.helpers import make_user
    from tests.live import Stack
    from tests.stream_clients import wait_for

    monkeypatch.delenv("FETCH_ALLOW_LOOPBACK", raising=False)
    http_server.routes["/secret"] = (200, {"Content-Type": "text/html"}, b"<p>internal admin page</p>")
    owner = make_user()
    channel = channel_create(owner=owner, name="ssrf")
    _, token = AuthToken.objects.create(user=owner)
    stack = Stack(redis_url=settings.REDIS_URL, WEB_WORKERS="1")
    try:
        import httpx

        api = httpx.Client(base_url=stack.url(""), headers={"Authorization": f"Bearer {token}"}, timeout=15)
        created = api.post("/api/contents", json={"channel_id": str(channel.id), "url": http_server.url("/secret")})
        assert created.status_code == 201, created.text
        content_url = f"/api/contents/{created.json()['id']}"
        assert wait_for(lambda: api.get(content_url).json()["status"] == "error", timeout=60), stack.output()[-3000:]
        body = api.get(content_url).json()
    finally:
        stack.stop()
    assert http_server.requests == [], "the stack's worker reached a loopback server"
    assert body["error_message"] == COULD_NOT_FETCH
