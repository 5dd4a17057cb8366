"""The unchanged status poll, answered ahead of the framework (core.fast_path).

`GET /api/contents/{channel_id}/status` with the ETag of the channel's current status
(and no query) is answered 304 by ChannelStatusView from four cache entries and the
throttle: the bearer token's (accounts.authentication), the user's access to the
channel (contents.caching.reader_key), the channel stream's head (the ETag names it)
and whether anything is processing at that head (the poll interval). Here all five are
read and checked in one Redis round trip, the throttle counted only when the answer is
the 304, and the 304 carries the view's very headers. Anything else (another head, a
missing entry, a refusal, a throttled client, a `since`) is handed to the view, which
answers it as before: the full path stays the one source of every other answer.
"""

import functools
import uuid
from typing import Any

from django.http import HttpRequest
from knox.settings import knox_settings
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer

from accounts import fast_auth
from accounts.authentication import BearerTokenAuthentication
from accounts.services import token_cache_key
from contents import caching
from contents.views import LAST_EVENT_ID_HEADER, ChannelStatusView
from core import throttling
from core.fast_path import (
    CACHE_MISS,
    DECLINED,
    Fallback,
    FastAnswer,
    FastRequest,
    Gate,
    cache_key,
    gated_read,
    loaded,
    stored,
)
from core.metrics import cache_family
from core.polling import poll_headers
from realtime.streams import channel_stream, head_key

ROUTE = "channel-status"
# The URL's, as the uuid converter matches it (lower-case hex).
PATH = r"/api/contents/(?P<channel_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/status"

# The cache families the full path reads (and counts hits of) for the same 304.
_SAMPLE = uuid.UUID(int=0)
CACHE_HITS = tuple(
    cache_family(key)
    for key in (
        token_cache_key("0" * 128),
        caching.reader_key(_SAMPLE, _SAMPLE),
        head_key(channel_stream(_SAMPLE)),
        caching.processing_key(_SAMPLE, 0),
    )
)


@functools.cache
def _view_reproduced() -> bool:
    """Whether the view still answers a 304 the way this module does: its
    authentication, permission, throttles, renderer and negotiation, and its URL."""
    from django.urls import resolve

    view = ChannelStatusView
    match = resolve(f"/api/contents/{_SAMPLE}/status")
    return (
        getattr(match.func, "view_class", None) is view
        and match.view_name == ROUTE
        and list(view.authentication_classes) == [BearerTokenAuthentication, SessionAuthentication]
        and list(view.permission_classes) == [IsAuthenticated]
        and list(view.throttle_classes) == [throttling.AnonRateThrottle, throttling.UserRateThrottle]
        and list(view.renderer_classes) == [JSONRenderer]
        and view.content_negotiation_class is DefaultContentNegotiation
        and view.versioning_class is None
        and not knox_settings.AUTO_REFRESH
    )


@functools.cache
def _view_headers() -> tuple[tuple[str, str], ...]:
    """DRF's headers on every answer of the view (Allow)."""
    view = ChannelStatusView()
    view.setup(HttpRequest())  # as as_view() does: HEAD is allowed where GET is
    return tuple(view.default_response_headers.items())


@functools.cache
def _stored_true() -> bytes:
    return stored(True)


class _NegotiatedRequest:
    """What DRF's content negotiation reads of a request: no query, its Accept header."""

    query_params: dict[str, str] = {}

    def __init__(self, accept: str | None) -> None:
        self.headers = {} if accept is None else {"accept": accept}


def _acceptable(accept: str | None) -> bool:
    """DRF's content negotiation would pick the view's renderer (else a 406)."""
    if accept is not None and len(accept) > 200:
        return _negotiated(accept)
    return _negotiated_often(accept)


def _negotiated(accept: str | None) -> bool:
    try:
        DefaultContentNegotiation().select_renderer(_NegotiatedRequest(accept), [JSONRenderer()])  # type: ignore[arg-type]  # reads headers and query_params only
    except NotAcceptable:
        return False
    return True


# A client sends the same few Accept headers every time; short ones are remembered.
_negotiated_often = functools.lru_cache(maxsize=256)(_negotiated)


async def unchanged_status(request: FastRequest) -> FastAnswer | Fallback:
    meta = request.meta
    value = meta.get("HTTP_IF_NONE_MATCH")
    if request.query_string or not value:
        return DECLINED
    channel_id = uuid.UUID(request.match["channel_id"])
    head = caching.claimed_head(channel_id, caching.if_none_match(value))
    if head is None or not _acceptable(meta.get("HTTP_ACCEPT")) or not _view_reproduced():
        return DECLINED
    bearer = await fast_auth.bearer(meta)
    if bearer is None:
        return DECLINED
    if isinstance(bearer, str):
        return bearer
    read = await gated_read(
        [
            bearer.gate,
            Gate(caching.reader_key(channel_id, bearer.user_id), "equal", _stored_true()),
            Gate(head_key(channel_stream(channel_id)), "equal", stored(head)),
            Gate(caching.processing_key(channel_id, head)),
        ],
        throttling.user_window(bearer.user_id, cache_key),
    )
    if isinstance(read, str):
        return read
    token_entry, _, _, processing = read.values
    active: Any = loaded(processing)
    if not bearer.holds(token_entry) or not isinstance(active, bool):
        await read.give_back()
        return CACHE_MISS
    headers = [
        ("ETag", caching.status_etag(channel_id, head, None)),
        (LAST_EVENT_ID_HEADER, str(head)),
        ("Cache-Control", "private, no-cache"),
        *poll_headers(active).items(),
        *_view_headers(),
    ]
    return FastAnswer(304, headers, bearer.user_id, CACHE_HITS)
