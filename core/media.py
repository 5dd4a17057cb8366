"""Serving stored media from the API's own origin (SERVE_MEDIA: `make run` and the
tests; production puts a CDN or S3 in front and turns it off).

A file is served only when the app that stored it claims it: each app registers,
for the top folder of its FileFields' `upload_to`, a function that takes a stored
name and answers the Content-Type it is served with, or None when it must not be
served (no such row, a video removed by moderation). So nothing reaches the web
that no row names, and what a row stops naming is gone at once, files still on disk
during the moderation grace period included.

What is served can never run as a page of this origin: its type is a passive media
type (anything else goes out as a download of plain bytes), with
`X-Content-Type-Options: nosniff` so the browser does not guess otherwise, and a
sandboxing Content-Security-Policy should a browser render it anyway.
"""

from collections.abc import Callable
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest

# stored name -> Content-Type to serve it as, or None: not served.
MediaResolver = Callable[[str], str | None]

_resolvers: dict[str, MediaResolver] = {}

# Types a browser only ever shows or plays, never runs.
PASSIVE_TYPES = frozenset({
    "video/mp4", "video/webm", "video/x-matroska", "video/x-msvideo", "video/quicktime",
    "image/jpeg", "image/png", "image/webp", "image/gif",
    "audio/mpeg", "audio/mp4", "audio/ogg", "audio/webm",
})
SANDBOX_POLICY = "default-src 'none'; media-src 'self'; img-src 'self'; sandbox"


def register_media(folder: str, resolver: MediaResolver) -> None:
    """Serve the files stored under `folder/` as `resolver` says (an app's ready())."""
    _resolvers[folder] = resolver


def serve_media(request: HttpRequest, path: str) -> FileResponse:
    if not settings.SERVE_MEDIA:
        raise Http404
    resolver = _resolvers.get(path.split("/", 1)[0])
    content_type = resolver(path) if resolver is not None else None
    if content_type is None:
        raise Http404
    passive = content_type in PASSIVE_TYPES
    try:
        file = default_storage.open(path, "rb")
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(
        file,
        content_type=content_type if passive else "application/octet-stream",
        as_attachment=not passive,
        filename=PurePosixPath(path).name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX_POLICY
    return response
