"""Fetching user-given URLs never reaches internal addresses."""

import ipaddress
import socket

import pytest

from core.netguard import BlockedAddress, FetchError, fetch, is_public_address

MAX = 1_000_000


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "10.255.1.2", "172.16.0.5", "192.168.1.1", "169.254.169.254",
     "100.64.0.1", "0.0.0.0", "224.0.0.1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"],
)
def test_internal_addresses_are_not_public(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_are_public(address):
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
    with pytest.raises(BlockedAddress, match="non-public"):
        fetch("http://intranet.example.test/", max_bytes=MAX)


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
