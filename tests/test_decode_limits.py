"""Decoding within limits: no frame over VIDEO_MAX_FRAME_PIXELS is decoded (an
upload's probe, an AI job's render), and a reverse or loop remix spools at most
AI_JOB_MAX_SPOOL_BYTES of raw frames, failing its job cleanly (refunded) past it."""

import io
import os
import subprocess
import sys
import tempfile
import textwrap
from fractions import Fraction

import av
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from aijobs import credits, effects
from aijobs.models import AIJob
from aijobs.runner import run
from tests.helpers import api_client_for, make_user
from tests.live import ROOT
from tests.media import make_video
from videos.media import open_video
from videos.models import Video
from videos.services import video_upload

SOURCE = make_video(seconds=2, width=160, height=120, fps=15)  # 30 frames of 57,600 bytes raw
FRAME_BYTES = 160 * 120 * 3


def temporary_files() -> dict[str, int]:
    """This process's open temporary files (descriptor: size): the spool is unlinked
    at once, so only its descriptor shows it."""
    files = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(tempfile.gettempdir()):
                files[fd] = os.fstat(int(fd)).st_size
        except OSError:
            pass
    return files


# --- frame size ----------------------------------------------------------------


@pytest.mark.django_db
def test_an_upload_whose_frames_are_over_the_pixel_limit_is_a_400_naming_it(settings):
    settings.VIDEO_MAX_FRAME_PIXELS = 160 * 120 - 1
    response = api_client_for(make_user()).post(
        "/v1/videos", {"file": SimpleUploadedFile("v.mp4", SOURCE), "title": "big"}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "code": "invalid", "attr": "file",
        "detail": "The video's frames are 160x120 (19200 pixels); the limit is 19199 pixels.",
    }
    assert not Video.objects.exists()


# The peak is read from VmHWM, this process's own: getrusage's ru_maxrss survives exec
# and would start at the peak of the test process that started it.
PROBE_PEAK = textwrap.dedent("""
    import sys
    import django
    django.setup()
    from videos.media import NotAVideo, probe

    def peak_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    before = peak_kb()
    try:
        with open(sys.argv[1], "rb") as file:
            probe(file)
        outcome = "accepted"
    except NotAVideo as exc:
        outcome = str(exc)
    print(outcome)
    print((peak_kb() - before) // 1024)
""")

MAKE_8K = textwrap.dedent("""
    import sys
    from tests.media import make_video
    open(sys.argv[1], "wb").write(make_video(seconds=1, width=8192, height=8192, fps=1))
""")


def test_probing_a_small_file_of_one_8192x8192_frame_costs_little_memory(tmp_path):
    """It cost about 1 GB (peak RSS) before the limit: the stream analysis and the
    first frame were decoded at full size. Measured in a process of its own."""
    crafted = tmp_path / "8k.mp4"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", MAKE_8K, str(crafted)], cwd=ROOT, env=env, check=True, timeout=120)
    assert crafted.stat().st_size < 1_000_000

    result = subprocess.run(
        [sys.executable, "-c", PROBE_PEAK, str(crafted)], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True
    )

    outcome, grown_mb = result.stdout.strip().splitlines()
    assert outcome == "The video's frames are 8192x8192 (67108864 pixels); the limit is 8294400 pixels."
    assert int(grown_mb) < 100, f"probing grew the process by {grown_mb} MB"


# --- AI jobs ---------------------------------------------------------------------


@pytest.fixture
def owner(transactional_db):
    return make_user("owner")


@pytest.fixture
def source(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("src.mp4", SOURCE), title="Source")


def run_job(owner, source, kind: str, **params):
    """Create through the API and run on this process (no fork: see test_aijobs)."""
    response = api_client_for(owner).post("/v1/ai/jobs", {"kind": kind, "video_id": str(source.id), "params": params}, format="json")
    assert response.status_code == 202, response.content
    run(response.json()["id"])
    return AIJob.objects.get(id=response.json()["id"])


def test_a_reverse_remix_over_the_spool_limit_fails_cleanly_and_is_refunded(owner, source, settings):
    settings.AI_JOB_MAX_SPOOL_BYTES = 10 * FRAME_BYTES
    balance = credits.balance(owner)

    job = run_job(owner, source, "remix", mode="reverse")

    assert (job.status, job.refunded, job.result_file.name) == ("failed", True, "")
    assert job.error == (
        "This remix keeps every frame raw while it works: 30 frames of 0.1 MB need more than the 0.6 MB "
        "of working space a job may use. Try a shorter or smaller video."
    )
    assert credits.balance(owner) == balance


def test_a_loop_remix_within_the_spool_limit_completes(owner, source, settings):
    settings.AI_JOB_MAX_SPOOL_BYTES = 30 * FRAME_BYTES
    job = run_job(owner, source, "remix", mode="loop", times=2)
    assert (job.status, job.error) == ("completed", "")


def test_the_spool_is_counted_as_it_is_written_when_the_header_understates_the_frames(settings, tmp_path):
    """A header may lie about its frame count: the spool stops at the limit anyway."""
    settings.AI_JOB_MAX_SPOOL_BYTES = 10 * FRAME_BYTES
    path = tmp_path / "src.mp4"
    path.write_bytes(SOURCE)
    spooled = []
    with path.open("rb") as file, open_video(file) as (container, stream):
        earlier = set(temporary_files())

        def on_progress(fraction: float) -> None:
            spooled.append(sum(size for fd, size in temporary_files().items() if fd not in earlier))

        with pytest.raises(effects.RenderError, match=r"11 frames of 0\.1 MB"):
            effects._remix({"mode": "reverse"}, container, stream, 1, stream.average_rate, 160, 120,
                           str(tmp_path / "out.mp4"), on_progress, 1000)
    assert max(spooled) == 10 * FRAME_BYTES


def test_a_job_whose_source_frames_are_over_the_pixel_limit_fails_cleanly_and_is_refunded(owner, source, settings):
    settings.VIDEO_MAX_FRAME_PIXELS = 100 * 100
    balance = credits.balance(owner)

    job = run_job(owner, source, "glitch")

    assert (job.status, job.refunded) == ("failed", True)
    assert job.error == (
        "The source video cannot be decoded: The video's frames are 160x120 (19200 pixels); the limit is 10000 pixels."
    )
    assert credits.balance(owner) == balance


def growing_avi(small: tuple[int, int], large: tuple[int, int], frames: int = 5) -> bytes:
    """An AVI whose MPEG-4 stream says `small` in its header and switches to `large`
    frames half-way (an in-band VOL header, as an encoder without a global header
    writes): the header check alone cannot see it."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(10, 1))
        stream.width, stream.height, stream.pix_fmt = *small, "yuv420p"
        for part, (width, height) in enumerate((small, large)):
            encoder = av.CodecContext.create("mpeg4", "w")
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.time_base, encoder.framerate = Fraction(1, 10), Fraction(10, 1)
            for index in range(frames):
                frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * index, np.uint8), format="rgb24")
                frame.pts, frame.time_base = part * frames + index, Fraction(1, 10)
                for packet in encoder.encode(frame):
                    packet.stream = stream
                    container.mux(packet)
            for packet in encoder.encode(None):
                packet.stream = stream
                container.mux(packet)
    return buffer.getvalue()


def test_a_job_whose_frames_grow_past_the_pixel_limit_mid_stream_fails_cleanly(owner, settings):
    settings.VIDEO_MAX_FRAME_PIXELS = 200 * 200  # and the decoders' slack, 131,072 pixels
    growing = video_upload(owner=owner, file=SimpleUploadedFile("g.avi", growing_avi((160, 120), (640, 480))), title="g")
    assert (growing.width, growing.height, str(growing.file.name)[-4:]) == (160, 120, ".avi")
    balance = credits.balance(owner)

    job = run_job(owner, growing, "glitch")

    # The decoder itself refuses the larger frames (FFmpeg's max_pixels).
    assert (job.status, job.refunded, job.result_file.name) == ("failed", True, "")
    assert job.error.startswith("The video could not be processed")
    assert credits.balance(owner) == balance
