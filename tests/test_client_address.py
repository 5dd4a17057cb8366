"""The client's address (core.client): the socket's peer, or what our own trusted
proxies forwarded, never a header the client chose; and the client's identity, that
address with an IPv6 one widened to its /CLIENT_IPV6_PREFIX network. The login
throttle (tests/test_login_throttle.py), the API's throttles and the anonymous view
count (tests/test_view_counts.py) count by the identity."""

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from core.client import client_address, client_identity
from tests.helpers import make_user
from tests.media import make_video
from videos.services import video_upload


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        (0, None, "10.0.0.9"),
        (0, "1.2.3.4", "10.0.0.9"),  # no proxy of ours: the header is the client's own words
        (1, "1.2.3.4", "1.2.3.4"),
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # what the client wrote is left of what our proxy appended
        (2, "6.6.6.6, 1.2.3.4, 172.16.0.2", "1.2.3.4"),
        (2, "1.2.3.4", "10.0.0.9"),  # fewer entries than proxies: not through them all
        (1, "not-an-address", "10.0.0.9"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_trusts_only_our_own_proxies(settings, proxies, forwarded_for, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    assert client_address(RequestFactory().get("/", headers=headers, REMOTE_ADDR="10.0.0.9")) == expected



@pytest.mark.parametrize(
    ("forwarded_for", "prefix", "expected"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),  # an IPv4 address is a client of its own
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),  # the same /64: the same client
        ("2001:DB8:1:2:0:0:0:FFFF", 64, "2001:db8:1:2::/64"),  # however it is written
        ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),  # the next /64: another client
        ("2001:db8:1:3::1", 56, "2001:db8:1::/56"),
        ("2001:db8:1:3::1", 128, "2001:db8:1:3::1/128"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # IPv4-mapped: the IPv4 client it is
        ("::ffff:192.0.2.8", 64, "192.0.2.8"),  # not one /64 with every IPv4 client
    ],
)
def test_the_client_identity_is_an_ipv4_address_or_an_ipv6_network(settings, forwarded_for, prefix, expected):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.CLIENT_IPV6_PREFIX = prefix
    request = RequestFactory().get("/", headers={"X-Forwarded-For": forwarded_for}, REMOTE_ADDR="10.0.0.9")
    assert client_identity(request) == expected


def test_an_ipv6_peer_without_a_proxy_is_its_network_too(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_identity(RequestFactory().get("/", REMOTE_ADDR="2001:db8:7:7::42")) == "2001:db8:7:7::/64"
    # A peer that is not an IP address (a Unix socket's) is its own identity.
    assert client_identity(RequestFactory().get("/", REMOTE_ADDR="")) == ""


@pytest.fixture
def anon_rate(monkeypatch):
    cache.clear()
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**api_settings.DEFAULT_THROTTLE_RATES, "anon": "5/min"})
    yield
    cache.clear()


@pytest.mark.django_db
def test_the_anonymous_throttle_counts_one_ipv6_network_as_one_client(settings, anon_rate):
    """Behind our proxy, an IPv6 client rotating through its /64 is one client to the
    anonymous rate; the next /64 has a rate of its own."""
    settings.TRUSTED_PROXY_COUNT = 1

    def feed(forwarded_for: str) -> int:
        return APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded_for).get("/v1/videos/feed").status_code

    statuses = [feed(f"2001:db8:aa:1::{n:x}") for n in range(1, 9)]
    assert statuses == [200] * 5 + [429] * 3
    assert feed("2001:db8:aa:2::1") == 200


@pytest.mark.django_db
def test_anonymous_viewers_behind_our_proxy_are_told_apart_by_the_address_it_forwarded(settings):
    """Behind a load balancer every request comes from its address: the anonymous view
    count would see one viewer. With the proxy trusted, the forwarded address counts."""
    settings.TRUSTED_PROXY_COUNT = 1
    video = video_upload(owner=make_user(), file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="Clip")
    for client_ip in ("192.0.2.1", "192.0.2.2", "192.0.2.1"):
        APIClient(REMOTE_ADDR="10.0.0.2", HTTP_USER_AGENT="Firefox", HTTP_X_FORWARDED_FOR=client_ip).post(
            f"/v1/videos/{video.id}/view"
        )
    # What a client writes left of the proxy's entry makes no new viewer.
    APIClient(REMOTE_ADDR="10.0.0.2", HTTP_USER_AGENT="Firefox", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.2").post(
        f"/v1/videos/{video.id}/view"
    )
    metadata = APIClient().post("/v1/videos/batch-metadata", {"video_ids": [str(video.id)]}, format="json").json()
    assert metadata["videos"][str(video.id)]["view_count"] == 2
