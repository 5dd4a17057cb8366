"""Small real videos made by the tests themselves (PyAV encodes them)."""

import io
from fractions import Fraction

import av
import numpy as np


def make_video(*, seconds: float = 1.0, width: int = 160, height: int = 120, fps: int = 10) -> bytes:
    """An H.264 MP4 of a moving colour gradient."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ys, xs = np.mgrid[0:height, 0:width]
        for index in range(int(seconds * fps)):
            frame = np.stack(
                [(xs * 255 // width + index * 7) % 256, (ys * 255 // height) % 256, np.full_like(xs, (index * 13) % 256)],
                axis=-1,
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def decode_frames(data_or_path) -> list[np.ndarray]:
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with av.open(source, mode="r") as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
