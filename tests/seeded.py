"""A small world of real rows for tests that probe the API from outside (the
schemathesis run, the authorisation matrix): two users who each own one of
everything that has an id, so that a probe can ask for its own rows, another
user's rows, and rows that do not exist."""

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from knox.models import AuthToken

from aijobs.services import job_create
from contents.models import Content, ProcessingStatus
from contents.services import channel_add_members, channel_create, content_move, content_submit
from moderation.services import block_users, videos_delete
from notifications.models import Notification, NotificationType
from tests.media import make_video
from videos.services import video_like, video_upload


@functools.cache
def small_video() -> bytes:
    """A real MP4, made once per process."""
    return make_video(seconds=0.5, width=64, height=48)


def new_user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username=username, password="pw-" + username, **extra)


def bearer_token(user: Any) -> str:
    _, token = AuthToken.objects.create(user=user)
    return token


@dataclass
class Side:
    """One user and one of each of their rows."""

    user: Any
    token: str
    channel: Any
    content: Any
    failed_content: Any
    video: Any
    job: Any
    notification: Any
    # A second token of theirs, for the probe that revokes one by its id.
    spare_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    me: Side
    other: Side
    staff: Any
    staff_token: str
    # A member of my channel, and a user I block: so that member and block ids hit rows.
    member: Any
    spare_member: Any
    blocked: Any
    # A member of the other's channel whom the other blocks: their member, their block.
    their_member: Any
    # Removed by moderation: nobody may see it, so it must look like a missing video.
    deleted_video: Any

    def ids(self) -> list[str]:
        """Every id of the world, as the API spells them."""
        rows = [self.staff, self.member, self.spare_member, self.blocked, self.their_member, self.deleted_video]
        for side in (self.me, self.other):
            rows += [side.user, side.channel, side.content, side.failed_content, side.video, side.job, side.notification]
        return [str(row.id) for row in rows]


def _side(username: str, video_bytes: bytes) -> Side:
    user = new_user(username)
    channel = channel_create(owner=user, name=f"{username}'s channel")
    content = content_submit(channel=channel, provider=user, title="Tides", description="Tide pools hold sea water.")
    failed = content_submit(channel=channel, provider=user, title="Bees", description="Bees make honey.")
    moved = content_move(failed, to=ProcessingStatus.FAILED, error_message="The link could not be fetched.")
    assert moved is not None
    failed = moved
    video = video_upload(owner=user, file=SimpleUploadedFile(f"{username}.mp4", video_bytes), title=f"{username}'s video")
    job = job_create(owner=user, kind="glitch", video=video, params={})
    return Side(
        user=user, token=bearer_token(user), channel=channel, content=Content.objects.get(id=content.id),
        failed_content=failed, video=video, job=job, notification=None, spare_token=bearer_token(user),
    )


def seed_world() -> World:
    """Two users with a channel, contents (one idle, one failed), a video, a queued AI
    job and a notification each (the other's like of their video); a staff user, a
    member of my channel, a user I block, a member of the other's channel whom the
    other blocks, and a video removed by moderation."""
    video_bytes = small_video()
    me = _side("me", video_bytes)
    other = _side("other", video_bytes)
    staff = new_user("staff", is_staff=True)
    # The moderation API's batch delete asks staff for this permission (moderation.views).
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="videos", codename="delete_video"))
    member = new_user("member")
    spare_member = new_user("spare-member")
    channel_add_members(channel=me.channel, user_ids=[member.id, spare_member.id])
    blocked = new_user("blocked")
    block_users(blocker=me.user, user_ids=[blocked.id])
    their_member = new_user("their-member")
    channel_add_members(channel=other.channel, user_ids=[their_member.id])
    block_users(blocker=other.user, user_ids=[their_member.id])
    video_like(video=other.video, user=me.user)
    video_like(video=me.video, user=other.user)
    me.notification = Notification.objects.get(recipient=me.user, type=NotificationType.LIKE)
    other.notification = Notification.objects.get(recipient=other.user, type=NotificationType.LIKE)
    doomed = video_upload(owner=other.user, file=SimpleUploadedFile("doomed.mp4", video_bytes), title="doomed")
    videos_delete(video_ids=[doomed.id], reason="test", by=staff)
    return World(
        me=me, other=other, staff=staff, staff_token=bearer_token(staff), member=member, spare_member=spare_member,
        blocked=blocked,
        their_member=their_member, deleted_video=doomed,
    )


def missing_id() -> str:
    """An id no row has."""
    return str(uuid.uuid4())
