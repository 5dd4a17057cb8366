"""The video work itself, on decoded frames (PyAV + numpy): glitch and remix.

`render` reads the source, calls `on_progress(fraction)` as frames are done, and
writes an H.264 MP4 to `output_path`. The source is opened with the upload's rules
(videos.media.open_video: known containers, frames of at most VIDEO_MAX_FRAME_PIXELS),
every frame is decoded at the stream's first size, and the raw frames a reverse or
loop remix keeps on disk are limited to AI_JOB_MAX_SPOOL_BYTES."""

import tempfile
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import IO, Any

import av
import numpy as np
from django.conf import settings

from videos.media import NotAVideo, open_video

Progress = Callable[[float], None]


class RenderError(Exception):
    pass


def glitch_frame(rgb: np.ndarray, index: int, intensity: float) -> np.ndarray:
    """Channel shift, block displacement and noise, varying from frame to frame."""
    rng = np.random.default_rng(index)
    height, width, _ = rgb.shape
    out = rgb.copy()
    shift = max(2, int(width * 0.02 * intensity * (1.5 + np.sin(index / 4))))
    out[:, :, 0] = np.roll(rgb[:, :, 0], shift, axis=1)
    out[:, :, 2] = np.roll(rgb[:, :, 2], -shift, axis=1)
    for _ in range(int(3 + 6 * intensity)):
        top = int(rng.integers(0, max(1, height - 8)))
        band = int(rng.integers(4, max(5, height // 10)))
        offset = int(rng.integers(-width // 6, width // 6 + 1))
        out[top : top + band] = np.roll(out[top : top + band], offset, axis=1)
    noise = rng.integers(-int(40 * intensity), int(40 * intensity) + 1, size=out.shape, dtype=np.int16)
    return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _frames(container: Any, stream: Any) -> tuple[int, Fraction]:
    """The stream's frame count (the header's, or estimated from its duration) and rate."""
    rate = stream.average_rate or Fraction(25, 1)
    total = stream.frames
    if not total:
        duration = (container.duration or 0) / av.time_base
        total = max(1, int(duration * float(rate)))
    return total, Fraction(rate).limit_denominator(1000)


class Encoder:
    def __init__(self, path: str, *, width: int, height: int, rate: Fraction) -> None:
        self.container = av.open(path, mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width = width - width % 2
        self.stream.height = height - height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"preset": "veryfast", "crf": "23"}

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb[: self.stream.height, : self.stream.width], format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _decoded(container: Any, stream: Any, max_frames: int) -> Iterator[np.ndarray]:
    """Every frame as RGB at the stream's first size: a stream whose frames change size
    mid-way is scaled back, so each frame costs width x height x 3 bytes, as counted."""
    width, height = stream.codec_context.width, stream.codec_context.height
    for index, frame in enumerate(container.decode(stream)):
        if index >= max_frames:
            raise RenderError(f"The source has more than {max_frames} frames.")
        yield frame.to_ndarray(format="rgb24", width=width, height=height)


def render(kind: str, params: dict[str, Any], source: IO[bytes], output_path: str, on_progress: Progress, *, max_frames: int) -> None:
    try:
        with open_video(source) as (container, stream):
            total, rate = _frames(container, stream)
            width, height = stream.codec_context.width, stream.codec_context.height
            if kind == "glitch":
                intensity = float(params.get("intensity", 0.6))
                encoder = Encoder(output_path, width=width, height=height, rate=rate)
                for index, rgb in enumerate(_decoded(container, stream, max_frames)):
                    encoder.write(glitch_frame(rgb, index, intensity))
                    on_progress(min(1.0, (index + 1) / total))
                encoder.close()
            elif kind == "remix":
                _remix(params, container, stream, total, rate, width, height, output_path, on_progress, max_frames)
            else:
                raise RenderError(f"Unknown job kind '{kind}'.")
    except NotAVideo as exc:
        raise RenderError(f"The source video cannot be decoded: {exc}") from exc
    except av.error.FFmpegError as exc:
        raise RenderError(f"The video could not be processed ({exc.__class__.__name__}).") from exc


def _spool_refusal(frames: int, frame_bytes: int, limit: int) -> RenderError:
    return RenderError(
        f"This remix keeps every frame raw while it works: {frames} frames of {_megabytes(frame_bytes)} need more "
        f"than the {_megabytes(limit)} of working space a job may use. Try a shorter or smaller video."
    )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _remix(
    params: dict[str, Any], container: Any, stream: Any, total: int, rate: Fraction, width: int, height: int,
    output_path: str, on_progress: Progress, max_frames: int,
) -> None:
    mode = params.get("mode", "reverse")
    if mode == "speed":
        encoder = Encoder(output_path, width=width, height=height, rate=rate)
        factor = float(params.get("factor", 2.0))
        position = 0.0
        for index, rgb in enumerate(_decoded(container, stream, max_frames)):
            # Each source frame covers 1/factor output frames: drop or repeat accordingly.
            position += 1 / factor
            while position >= 1:
                encoder.write(rgb)
                position -= 1
            on_progress(min(1.0, (index + 1) / total))
        encoder.close()
        return
    # reverse and loop both need every frame: spool them to disk, not memory, and no
    # more than AI_JOB_MAX_SPOOL_BYTES of them (raw frames are large: a 23 KB upload of
    # 300 still 1080p frames spooled 1.9 GB). The header's frame count is checked
    # before anything is decoded, then the frames actually decoded, as a header may lie.
    frame_bytes = width * height * 3
    limit = settings.AI_JOB_MAX_SPOOL_BYTES
    if total * frame_bytes > limit:
        raise _spool_refusal(total, frame_bytes, limit)
    with tempfile.TemporaryFile() as spool:
        count = 0
        for rgb in _decoded(container, stream, max_frames):
            if (count + 1) * frame_bytes > limit:
                raise _spool_refusal(count + 1, frame_bytes, limit)
            spool.write(rgb.tobytes())
            count += 1
            on_progress(min(0.5, 0.5 * count / total))
        encoder = Encoder(output_path, width=width, height=height, rate=rate)
        times = int(params.get("times", 2)) if mode == "loop" else 1
        order = list(range(count - 1, -1, -1)) if mode == "reverse" else list(range(count)) * times
        for done, index in enumerate(order, start=1):
            spool.seek(index * frame_bytes)
            rgb = np.frombuffer(spool.read(frame_bytes), dtype=np.uint8).reshape(height, width, 3)
            encoder.write(rgb)
            on_progress(0.5 + 0.5 * done / len(order))
        encoder.close()
