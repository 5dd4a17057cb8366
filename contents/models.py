import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


class ContentStatus(models.TextChoices):
    IDLE = "idle", "Uploaded, waiting for AI"
    GENERATING = "generating", "AI generating"
    COMPLETE = "complete", "AI generation complete"
    ERROR = "error", "AI generation failed"


class ProcessingStatus(models.TextChoices):
    UPLOADING = "uploading", "Uploading or fetching the link"
    SUMMARIZING = "summarizing", "Generating the summary"
    QA_GENERATING = "qa_generating", "Generating questions and answers"
    COMPLETED = "completed", "All processing completed"
    FAILED = "failed", "Processing failed"


# The only pairs the two columns may hold; a database constraint enforces them too.
STATUS_OF_STAGE: dict[str, str] = {
    ProcessingStatus.UPLOADING: ContentStatus.IDLE,
    ProcessingStatus.SUMMARIZING: ContentStatus.GENERATING,
    ProcessingStatus.QA_GENERATING: ContentStatus.GENERATING,
    ProcessingStatus.COMPLETED: ContentStatus.COMPLETE,
    ProcessingStatus.FAILED: ContentStatus.ERROR,
}
ACTIVE_STAGES = (ProcessingStatus.UPLOADING, ProcessingStatus.SUMMARIZING, ProcessingStatus.QA_GENERATING)
PROCESSING_STATUSES = (ContentStatus.IDLE, ContentStatus.GENERATING)


def consistent_status_pairs() -> Q:
    pairs = Q()
    for stage, status in STATUS_OF_STAGE.items():
        pairs |= Q(processing_status=stage, status=status)
    return pairs


class ChannelQuerySet(models.QuerySet):
    def visible_to(self, user: "User | AnonymousUser") -> "ChannelQuerySet":
        """Channels the user owns or is a member of."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(
            Q(owner=user) | Exists(ChannelMembership.objects.filter(channel=OuterRef("pk"), user=user))
        )


class Channel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_channels")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ChannelQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name


class ChannelMembership(models.Model):
    """A user id the channel's owner lets read it. Not a database foreign key: the owner
    may add any id, and whether an account has it is never told (a nonexistent id gets
    the same answer and the same row as an existing one). Django still deletes the rows
    of a deleted user (on_delete)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="channel_memberships", db_constraint=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "user"], name="channel_member_once")]


class ContentQuerySet(models.QuerySet):
    def visible_to(self, user: "User | AnonymousUser") -> "ContentQuerySet":
        """Contents of channels the user owns or is a member of."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(
            Q(channel__owner=user)
            | Exists(ChannelMembership.objects.filter(channel=OuterRef("channel_id"), user=user))
        )


class Content(models.Model):
    """A link, image or video submitted to a channel; the AI pipeline turns it into
    `ai_gen_metadata`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="contents")
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contents")
    url = models.URLField(max_length=2048, blank=True)
    img_url = models.URLField(max_length=2048, blank=True)
    video_url = models.URLField(max_length=2048, blank=True)
    title = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20, choices=ContentStatus.choices, default=ContentStatus.IDLE)
    processing_status = models.CharField(
        max_length=20, choices=ProcessingStatus.choices, default=ProcessingStatus.UPLOADING
    )
    progress = models.PositiveSmallIntegerField(default=0)
    estimated_completion = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    # Raised by every transition, regenerations included: clients keep the highest.
    version = models.PositiveIntegerField(default=1)
    # Pipeline bookkeeping, not part of the API.
    source_text = models.TextField(blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=1)
    job_id = models.CharField(max_length=100, blank=True, editable=False)
    stage_started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ai_gen_metadata = models.JSONField(null=True, blank=True)
    link_preview_metadata = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ContentQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["channel", "-created_at"], name="content_channel_created"),
            models.Index(fields=["channel", "status"], name="content_channel_status"),
            models.Index(fields=["processing_status"], name="content_processing_status"),
            models.Index(fields=["updated_at"], name="content_updated_at"),
            models.Index(fields=["channel", "status", "-finished_at"], name="content_channel_finished"),
            # The status answer's processing list, oldest first: its first 100 straight from
            # this index, where (channel, -created_at) walks past every finished content
            # before them (6 ms at 100,000 contents, 2% processing).
            models.Index(
                fields=["channel", "created_at", "id"], condition=Q(status__in=PROCESSING_STATUSES), name="content_channel_processing"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=consistent_status_pairs(), name="content_status_pair_consistent"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="content_progress_at_most_100"),
        ]

    def __str__(self) -> str:
        return self.title or self.url or str(self.id)

    @property
    def error_message_or_none(self) -> str | None:
        return self.error_message or None


class ChannelTotals(models.Model):
    """How many of the channel's contents are in each status, one column per
    ContentStatus value. Kept by contents.totals in the transaction of every change
    (a submit, each move's `count_in_totals` step, a deletion), so the status answer
    reads one row instead of counting the channel's contents. A channel with no row
    has no contents yet. No check that a column stays >= 0: a count gone wrong must not
    stop the pipeline's moves; `manage.py recount_channel_totals` repairs one."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, primary_key=True, related_name="totals")
    idle = models.IntegerField(default=0)
    generating = models.IntegerField(default=0)
    complete = models.IntegerField(default=0)
    error = models.IntegerField(default=0)

    class Meta:
        verbose_name_plural = "channel totals"

    def __str__(self) -> str:
        return f"totals of {self.channel_id}"


class StageRun(models.Model):
    """How long one stage of one content took: the ETA averages recent runs."""

    content = models.ForeignKey(Content, on_delete=models.CASCADE, related_name="stage_runs")
    stage = models.CharField(max_length=20, choices=ProcessingStatus.choices)
    seconds = models.FloatField()
    # What the stage produced (the summary's characters, the Q&A pairs): a running
    # stage's progress is what it has produced so far against the recent average.
    produced = models.PositiveIntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["stage", "-finished_at"], name="stagerun_stage_recent")]
