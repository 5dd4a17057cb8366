"""Demo data that shows every state at once, for `make run` (`manage.py seed_demo`).

The demo user's channel holds a content in each status: two complete, one failed,
and one waiting and one generating. Those two are real contents whose pipeline job
waits in the `demo` RQ queue, which no worker of `make run` serves, so they stay in
progress (the sweep leaves a content whose job is waiting in a queue alone);
`manage.py seed_demo --finish` runs those jobs, live on an open page. The studio has a
video and a finished glitch job, and the bell unread notifications (a like, a
comment, the finished job, the contents' results). Idempotent: a second run adds
only what is missing (a waiting or generating content that was finished since is
replaced by a new one)."""

import io
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import django_rq
import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rq import Queue
from rq.job import Job

from aijobs import runner as aijob_runner
from aijobs.models import AIJob, JobStatus
from aijobs.services import job_create
from contents import pipeline
from contents.models import Channel, Content, ContentStatus, ProcessingStatus
from contents.services import channel_create, content_move, content_submit
from notifications.models import Notification
from videos.models import Video
from videos.services import video_comment, video_like, video_upload

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the demo account's published password (README)
FRIEND_USERNAME = "demo-friend"
CHANNEL_NAME = "Demo channel"
# No worker of `make run` serves this queue: the contents whose job waits here stay in progress.
PARKED_QUEUE = "demo"

COMPLETE = [
    {
        "title": "Redis in one page",
        "description": (
            "Redis is an in-memory data store used as a cache, a message broker and a queue. "
            "It keeps data in memory, which makes reads and writes take well under a millisecond. "
            "Redis supports strings, hashes, lists, sets and sorted sets. "
            "Persistence is optional: snapshots or an append-only file write the data to disk. "
            "Many web applications put Redis in front of their database to cache frequent queries."
        ),
        "category": "databases",
    },
    {
        "title": "Server-Sent Events",
        "description": (
            "Server-Sent Events let a server push updates to a browser over one long HTTP response. "
            "The browser's EventSource reconnects by itself and sends the id of the last event it saw. "
            "SSE is one-way, from server to client, which is all a status feed needs. "
            "WebSockets are two-way and need more work from the server and the proxies in between."
        ),
        "category": "web",
    },
]
FAILED = {
    "url": "https://example.com/an-article-that-moved",
    "error_message": "The link answered 404 Not Found.",
}
GENERATING = {
    "title": "Tide pools",
    "description": (
        "Tide pools are rocky pools on the seashore that fill with sea water at high tide. "
        "At low tide they stay behind, full of life: starfish, anemones, snails and small fish. "
        "Crabs hide under the rocks, and seaweed gives shelter from the sun. "
        "The animals that live there survive waves, heat and changing salt levels every day."
    ),
    "category": "nature",
}
WAITING = {
    "title": "How a glacier moves",
    "description": (
        "A glacier is a river of ice that moves under its own weight. "
        "Its ice deforms slowly, and meltwater at its base lets it slide over the rock. "
        "Glaciers carve valleys, carry boulders for kilometres and leave lakes behind when they melt."
    ),
    "category": "nature",
}


@dataclass
class DemoReport:
    user: Any
    channel: Channel
    created: list[str] = field(default_factory=list)


def demo_video_bytes(*, seconds: float = 3.0, width: int = 320, height: int = 180, fps: int = 12) -> bytes:
    """A small H.264 MP4 of drifting colour bands (PyAV), so the demo needs no file."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ys, xs = np.mgrid[0:height, 0:width]
        for index in range(int(seconds * fps)):
            shift = index * 6
            frame = np.stack(
                [(xs + shift) * 255 // width % 256, (ys * 200 // height + 40) % 256, ((xs + ys + 2 * shift) // 3) % 256],
                axis=-1,
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _user(username: str, *, password: str | None) -> Any:
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
    return user


def _park(content: Content) -> None:
    """Move the content's pipeline job from the default queue to the parked one."""
    connection = django_rq.get_connection("default")
    job = Job.fetch(content.job_id, connection=connection)
    django_rq.get_queue("default").remove(job)
    _parked_queue().enqueue_job(job)


def _parked_queue() -> Queue:
    return Queue(PARKED_QUEUE, connection=django_rq.get_connection("default"))


def finish_parked() -> int:
    """Run the parked jobs (the demo's waiting and generating contents) to the end, in
    a burst worker of this process's own; returns how many there were."""
    from core.worker import DjangoWorker

    queue = _parked_queue()
    count = queue.count
    if count:
        DjangoWorker([queue], connection=queue.connection).work(burst=True, logging_level="WARNING")
    return count


def _in(channel: Channel, *statuses: str) -> bool:
    return channel.contents.filter(status__in=statuses).exists()


def seed_demo() -> DemoReport:
    user = _user(DEMO_USERNAME, password=DEMO_PASSWORD)
    friend = _user(FRIEND_USERNAME, password=None)
    channel = Channel.objects.filter(owner=user, name=CHANNEL_NAME).first() or channel_create(owner=user, name=CHANNEL_NAME)
    report = DemoReport(user=user, channel=channel)

    if not _in(channel, ContentStatus.COMPLETE):
        for fields in COMPLETE:
            content = content_submit(channel=channel, provider=user, **fields)
            # Run here, so the page opens on finished contents; the queued job then finds nothing to do.
            pipeline.run(content.id)
        report.created.append("2 complete contents")
    if not _in(channel, ContentStatus.ERROR):
        content = content_submit(channel=channel, provider=user, url=FAILED["url"])
        content_move(content, to=ProcessingStatus.FAILED, error_message=FAILED["error_message"])
        report.created.append("a failed content")
    if not _in(channel, ContentStatus.GENERATING):
        content = content_submit(channel=channel, provider=user, **GENERATING)
        moved = pipeline.move(content, to=ProcessingStatus.SUMMARIZING, changes=pipeline.upload_stage(content))
        _park(moved or content)
        report.created.append("a generating content (summarizing)")
    if not _in(channel, ContentStatus.IDLE):
        _park(content_submit(channel=channel, provider=user, **WAITING))
        report.created.append("a waiting content")

    video = Video.objects.filter(owner=user).order_by("created_at").first()
    if video is None:
        video = video_upload(
            owner=user, file=SimpleUploadedFile("sunset-drive.mp4", demo_video_bytes(), content_type="video/mp4"),
            title="Sunset drive",
        )
        report.created.append("a video")
    if not AIJob.objects.filter(owner=user, status=JobStatus.COMPLETED).exists():
        job = job_create(owner=user, kind="glitch", video=video, params={"intensity": 0.6})
        aijob_runner.run(job.id)
        report.created.append("a finished glitch job")
    if not Notification.objects.filter(recipient=user, actor=friend).exists():
        video_like(video=video, user=friend)
        video_comment(video=video, user=friend, text="Love the colours at the end!")
        report.created.append("a like and a comment from demo-friend")
    return report
