"""Reading uploaded videos for real (PyAV, which ships its own FFmpeg)."""

import io
from dataclasses import dataclass
from typing import IO

import av
from PIL import Image


class NotAVideo(Exception):
    pass


@dataclass
class VideoInfo:
    duration_seconds: float
    width: int
    height: int
    codec: str
    thumbnail_jpeg: bytes


def probe(file: IO[bytes]) -> VideoInfo:
    """Decode the file's first video frame and read its duration, size and codec."""
    try:
        with av.open(file, mode="r") as container:
            if not container.streams.video:
                raise NotAVideo("The file has no video stream.")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise NotAVideo("The video stream has no decodable frame.")
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            image: Image.Image = first.to_image()
            image.thumbnail((480, 480))
            thumbnail = io.BytesIO()
            image.convert("RGB").save(thumbnail, format="JPEG", quality=80)
            return VideoInfo(
                duration_seconds=round(float(duration), 3),
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                codec=stream.codec_context.name,
                thumbnail_jpeg=thumbnail.getvalue(),
            )
    except NotAVideo:
        raise
    except (av.error.FFmpegError, StopIteration, ValueError, OSError) as exc:
        raise NotAVideo("The file is not a video that can be decoded.") from exc
    finally:
        file.seek(0)
