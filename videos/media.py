"""Reading uploaded videos for real (PyAV, which ships its own FFmpeg).

Every video this project decodes (an upload's probe, an AI job's render) is opened
through `open_video`, so the rules below hold everywhere:

- Only the demuxers of CONTAINERS may read the file (FFmpeg's `format_whitelist`):
  FFmpeg otherwise guesses among hundreds of formats, playlists and image pipes
  included, and what a file is stored and served as is decided from the demuxer
  that read it, never from the client's name or type.
- No frame larger than VIDEO_MAX_FRAME_PIXELS is decoded: the limit is checked on
  the header's dimensions before any frame is decoded, and FFmpeg's `max_pixels`
  makes its decoders refuse a larger frame anywhere (during the stream analysis
  av.open runs, and a stream whose frames grow mid-way). One 8192x8192 frame in a
  200 KB file otherwise cost about 1 GB to probe.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

import av
from django.conf import settings


class NotAVideo(Exception):
    pass


class FrameTooLarge(NotAVideo):
    pass


@dataclass(frozen=True)
class StoredType:
    """How a decoded video is stored and served: the extension of its stored name
    and the Content-Type it is served with."""

    extension: str
    content_type: str


MP4 = StoredType("mp4", "video/mp4")
WEBM = StoredType("webm", "video/webm")
MATROSKA = StoredType("mkv", "video/x-matroska")
AVI = StoredType("avi", "video/x-msvideo")
THUMBNAIL = StoredType("jpg", "image/jpeg")
# The codecs a WebM file may hold; a Matroska file with others is stored as .mkv.
WEBM_CODECS = frozenset({"vp8", "vp9", "av1", "opus", "vorbis"})

# FFmpeg demuxer name -> what its files are stored as. The ISO family (MP4,
# QuickTime, 3GP) is one demuxer and plays as video/mp4.
CONTAINERS: dict[str, StoredType] = {
    "mov,mp4,m4a,3gp,3g2,mj2": MP4,
    "matroska,webm": MATROSKA,
    "avi": AVI,
}
ACCEPTED = "MP4/QuickTime, WebM/Matroska or AVI"
DECODER_SLACK_PIXELS = 128 * 1024

# Extension of a stored name -> Content-Type, for serving (videos.selectors).
CONTENT_TYPES = {t.extension: t.content_type for t in (MP4, WEBM, MATROSKA, AVI, THUMBNAIL)}


def content_type_of(name: str) -> str:
    """The Content-Type a stored file is served with; a name this module did not make
    (a file stored before these rules, under the client's extension) is plain bytes."""
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower().lstrip("."), "application/octet-stream")


@dataclass
class VideoInfo:
    duration_seconds: float
    width: int
    height: int
    codec: str
    stored_type: StoredType
    thumbnail_jpeg: bytes


def _stored_type(container: Any) -> StoredType:
    stored = CONTAINERS[container.format.name]
    if stored is MATROSKA and all(s.codec_context and s.codec_context.name in WEBM_CODECS for s in container.streams):
        return WEBM
    return stored


@contextmanager
def open_video(file: IO[bytes] | str, *, low_memory: bool = False) -> Iterator[tuple[Any, Any]]:
    """The container and its first video stream, for decoding with the limits above.
    NotAVideo (FrameTooLarge for the pixel limit) if the file is refused.
    `low_memory` decodes in one thread (frame threads each hold frames of their own)."""
    limit = settings.VIDEO_MAX_FRAME_PIXELS
    # The decoders count their padded buffers, and small frames have fixed-size ones
    # (a 160x120 MPEG-4 frame needs max_pixels 89,600; from 640x480 up it is exact):
    # the header check below is exact, the decoders' backstop has this slack.
    codec_options = {"max_pixels": str(limit + DECODER_SLACK_PIXELS)}
    if low_memory:
        codec_options["threads"] = "1"
    try:
        # `options` reach the format and every stream's decoder in the stream analysis;
        # the format leaves the codec options it does not know alone.
        container = av.open(file, mode="r", options=codec_options, container_options={"format_whitelist": ",".join(CONTAINERS)})
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise NotAVideo(f"The file is not a video that can be decoded ({ACCEPTED}).") from exc
    try:
        if container.format.name not in CONTAINERS or not container.streams.video:
            raise NotAVideo("The file has no video stream.")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limit:
            raise FrameTooLarge(
                f"The video's frames are {width}x{height} ({width * height} pixels); the limit is {limit} pixels."
            )
        # The decoder opened for decoding gets the limit too (PyAV opens it on first use).
        stream.codec_context.options = dict(codec_options)
        yield container, stream
    finally:
        container.close()


def _thumbnail_size(width: int, height: int, box: int = 480) -> tuple[int, int]:
    scale = min(1.0, box / max(width, height, 1))
    return max(2, int(width * scale)), max(2, int(height * scale))


def probe(file: IO[bytes]) -> VideoInfo:
    """Decode the file's first video frame and read its duration, size, codec and
    container (what it is stored as)."""
    try:
        with open_video(file, low_memory=True) as (container, stream):
            first = next(container.decode(stream), None)
            if first is None:
                raise NotAVideo("The video stream has no decodable frame.")
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            # Scaled while converting (swscale), never as a full-size RGB image first.
            thumb_width, thumb_height = _thumbnail_size(first.width, first.height)
            image = first.to_image(width=thumb_width, height=thumb_height)
            thumbnail = io.BytesIO()
            image.convert("RGB").save(thumbnail, format="JPEG", quality=80)
            return VideoInfo(
                duration_seconds=round(float(duration), 3),
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                codec=stream.codec_context.name,
                stored_type=_stored_type(container),
                thumbnail_jpeg=thumbnail.getvalue(),
            )
    except NotAVideo:
        raise
    except (av.error.FFmpegError, StopIteration, ValueError, OSError) as exc:
        raise NotAVideo("The file is not a video that can be decoded.") from exc
    finally:
        file.seek(0)
