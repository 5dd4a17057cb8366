import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class NotificationType(models.TextChoices):
    LIKE = "like"
    COMMENT = "comment"
    REMIX = "remix"
    AI_JOB_COMPLETED = "ai_job_completed"
    AI_JOB_FAILED = "ai_job_failed"
    CONTENT_COMPLETE = "content_complete"
    CONTENT_ERROR = "content_error"


class Notification(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    type = models.CharField(max_length=30, choices=NotificationType.choices)
    data = models.JSONField(default=dict)
    # Unread notifications with the same key are one row whose count grows (a burst
    # of likes on one video is one "N people liked your video").
    group_key = models.CharField(max_length=100, blank=True)
    count = models.PositiveIntegerField(default=1)
    is_read = models.BooleanField(default=False)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["recipient", "-created_at", "-id"], name="notification_recent"),
            models.Index(fields=["recipient"], condition=Q(is_read=False), name="notification_unread"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "group_key"], condition=Q(is_read=False) & ~Q(group_key=""), name="notification_one_unread_group"
            )
        ]
