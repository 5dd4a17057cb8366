"""The video work itself, on decoded frames (PyAV + numpy): glitch and remix.

`render` reads the source, calls `on_progress(fraction)` as frames are done, and
writes an H.264 MP4 to `output_path`."""

import tempfile
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import IO, Any

import av
import numpy as np

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


def _frames(source: IO[bytes]) -> tuple[Any, Any, int, Fraction]:
    container = av.open(source, mode="r")
    if not container.streams.video:
        raise RenderError("The source has no video stream.")
    stream = container.streams.video[0]
    rate = stream.average_rate or Fraction(25, 1)
    total = stream.frames
    if not total:
        duration = (container.duration or 0) / av.time_base
        total = max(1, int(duration * float(rate)))
    return container, stream, total, Fraction(rate).limit_denominator(1000)


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
    for index, frame in enumerate(container.decode(stream)):
        if index >= max_frames:
            raise RenderError(f"The source has more than {max_frames} frames.")
        yield frame.to_ndarray(format="rgb24")


def render(kind: str, params: dict[str, Any], source: IO[bytes], output_path: str, on_progress: Progress, *, max_frames: int) -> None:
    try:
        container, stream, total, rate = _frames(source)
    except av.error.FFmpegError as exc:
        raise RenderError("The source video cannot be decoded.") from exc
    try:
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
    except av.error.FFmpegError as exc:
        raise RenderError(f"The video could not be processed ({exc.__class__.__name__}).") from exc
    finally:
        container.close()


def _remix(params, container, stream, total, rate, width, height, output_path, on_progress, max_frames) -> None:  # type: ignore[no-untyped-def]
    mode = params.get("mode", "reverse")
    encoder = Encoder(output_path, width=width, height=height, rate=rate)
    if mode == "speed":
        factor = float(params.get("factor", 2.0))
        position = 0.0
        for index, rgb in enumerate(_decoded(container, stream, max_frames)):
            # Each source frame covers 1/factor output frames: drop or repeat accordingly.
            position += 1 / factor
            while position >= 1:
                encoder.write(rgb)
                position -= 1
            on_progress(min(1.0, (index + 1) / total))
    else:
        # reverse and loop both need every frame: spool them to disk, not memory.
        with tempfile.TemporaryFile() as spool:
            count = 0
            for rgb in _decoded(container, stream, max_frames):
                spool.write(rgb.tobytes())
                count += 1
                on_progress(min(0.5, 0.5 * count / total))
            frame_bytes = width * height * 3
            times = int(params.get("times", 2)) if mode == "loop" else 1
            order = list(range(count - 1, -1, -1)) if mode == "reverse" else list(range(count)) * times
            for done, index in enumerate(order, start=1):
                spool.seek(index * frame_bytes)
                rgb = np.frombuffer(spool.read(frame_bytes), dtype=np.uint8).reshape(height, width, 3)
                encoder.write(rgb)
                on_progress(0.5 + 0.5 * done / len(order))
    encoder.close()
