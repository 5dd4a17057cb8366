"""The client's address (core.client): the socket's peer, or what our own trusted
proxies forwarded, never a header the client chose. The login throttle
(tests/test_login_throttle.py) and the anonymous view count use it."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from rest_framework.test import APIClient

from core.client import client_address
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
