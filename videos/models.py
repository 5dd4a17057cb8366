import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class VideoQuerySet(models.QuerySet):
    def visible(self) -> "VideoQuerySet":
        """Videos anyone may see: not removed by moderation."""
        return self.filter(deleted_at__isnull=True)


class Video(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="videos")
    title = models.CharField(max_length=200)
    file = models.FileField(upload_to="videos/%Y/%m/")
    thumbnail = models.FileField(upload_to="thumbnails/%Y/%m/", blank=True)
    duration_seconds = models.FloatField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    codec = models.CharField(max_length=50)
    size_bytes = models.BigIntegerField()
    remix_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="remixes")
    # Counters move only through videos.services, atomically in SQL.
    view_count = models.BigIntegerField(default=0)
    like_count = models.BigIntegerField(default=0)
    comment_count = models.BigIntegerField(default=0)
    remix_count = models.BigIntegerField(default=0)
    glitch_count = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = VideoQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="video_feed", condition=Q(deleted_at__isnull=True)),
            models.Index(fields=["owner", "-created_at"], name="video_owner_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(view_count__gte=0, like_count__gte=0, comment_count__gte=0, remix_count__gte=0, glitch_count__gte=0),
                name="video_counters_not_negative",
            )
        ]

    def __str__(self) -> str:
        return self.title


class Like(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="likes")
    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="likes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "video"], name="like_once_per_user")]


class Comment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comments")
    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="comments")
    text = models.TextField(max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["video", "-created_at"], name="comment_video_recent")]


class View(models.Model):
    """Views of a video at a time, kept for trending (views in a recent window). Written
    by the flush of the Redis view counters, one row per video per flush with `count`
    views in it (or one row per view, with its user, when Redis was unreachable)."""

    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="views")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    count = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["created_at", "video"], name="view_recent_video")]


class ViewFlush(models.Model):
    """A batch of view counts moved from Redis into the rows. Inserted in the transaction
    that applies the batch, so a batch is applied at most once, however often a flush
    that died before deleting it from Redis is retried; reads use it to tell whether
    a batch still in Redis is already in the rows."""

    batch = models.UUIDField(primary_key=True)
    flushed_at = models.DateTimeField(auto_now_add=True, db_index=True)
