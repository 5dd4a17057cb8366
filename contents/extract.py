"""The uploading stage's I/O: fetch the link, read its preview and main text, check
that media URLs are reachable and are what they claim. Every fetch goes through the
SSRF guard."""

from typing import Any
from urllib.parse import urljoin

import filetype
import trafilatura
from django.conf import settings
from trafilatura.metadata import extract_metadata

from core.netguard import FetchError, ReadProgress, fetch

HTML_TYPES = {"text/html", "application/xhtml+xml", ""}
MAX_SOURCE_CHARS = 50_000
SNIFF_BYTES = 8192


class StageFailed(Exception):
    """A stage failed for a reason the user can read and act on."""


def _decode(body: bytes, content_type_header: str) -> str:
    charset = "utf-8"
    if "charset=" in content_type_header:
        charset = content_type_header.split("charset=", 1)[1].split(";")[0].strip().strip('"') or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def link_preview(html: str, url: str) -> dict[str, Any]:
    """OpenGraph / HTML meta, read by trafilatura's metadata extractor."""
    meta = extract_metadata(html, default_url=url)
    image = getattr(meta, "image", None) if meta else None
    return {
        "title": (getattr(meta, "title", None) or None) if meta else None,
        "description": (getattr(meta, "description", None) or None) if meta else None,
        "image_url": urljoin(url, image) if image else None,
        "site_name": (getattr(meta, "sitename", None) or None) if meta else None,
    }


def read_page(url: str, *, on_read: ReadProgress | None = None) -> tuple[dict[str, Any], str]:
    """The page's link preview and its main text; `on_read` hears the download's progress."""
    try:
        page = fetch(url, max_bytes=settings.FETCH_MAX_PAGE_BYTES, on_read=on_read)
    except FetchError as exc:
        raise StageFailed(str(exc)) from exc
    if page.content_type == "text/plain":
        text = _decode(page.body, page.headers.get("content-type", ""))
        return {"title": None, "description": None, "image_url": None, "site_name": None}, text
    if page.content_type not in HTML_TYPES:
        raise StageFailed(f"{url} is not a web page (it is {page.content_type}); submit it as img_url or video_url.")
    html = _decode(page.body, page.headers.get("content-type", ""))
    preview = link_preview(html, page.url)
    text = trafilatura.extract(html, url=page.url, include_comments=False, include_tables=False) or ""
    return preview, text


def check_media(url: str, kind: str) -> None:
    """The media answers, and both its declared type and its first bytes say `kind`."""
    max_bytes = settings.FETCH_MAX_IMAGE_BYTES if kind == "image" else settings.FETCH_MAX_VIDEO_BYTES
    try:
        media = fetch(url, max_bytes=max_bytes, read_bytes=SNIFF_BYTES)
    except FetchError as exc:
        raise StageFailed(str(exc)) from exc
    sniffed = filetype.guess(media.body)
    if sniffed is None or not sniffed.mime.startswith(kind + "/"):
        seen = sniffed.mime if sniffed else "unrecognised data"
        raise StageFailed(f"{url} is not an {kind} (its content is {seen}).")
    declared = media.content_type
    if declared and declared != "application/octet-stream" and not declared.startswith(kind + "/"):
        raise StageFailed(f"{url} claims to be {declared}, but its content is {sniffed.mime}.")


def gather_source(
    *, url: str, img_url: str, video_url: str, title: str, description: str, on_read: ReadProgress | None = None
) -> dict[str, Any]:
    """What the uploading stage stores: the link preview and the text the AI reads.
    `on_read` hears how much of the link's page has been read (the media are only sniffed)."""
    preview = None
    parts: list[str | None] = [description]
    if url:
        preview, main_text = read_page(url, on_read=on_read)
        parts.append(main_text or preview.get("description"))
    if img_url:
        check_media(img_url, "image")
    if video_url:
        check_media(video_url, "video")
    # The title is context for the AI, not a sentence of the text; alone, it is the text.
    text = "\n\n".join(p.strip() for p in parts if p and p.strip()) or (title or (preview or {}).get("title") or "").strip()
    if not text:
        raise StageFailed(
            "There is no text to summarize: the content has no title or description and its link has no readable text."
        )
    return {"link_preview_metadata": preview, "source_text": text[:MAX_SOURCE_CHARS]}
