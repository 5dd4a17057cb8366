import uuid

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import models
from django.db.models import Q


class JobKind(models.TextChoices):
    GLITCH = "glitch", "Glitch effect"
    REMIX = "remix", "Remix"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED)
CANCELLED = "Cancelled"
INSUFFICIENT_CREDITS = "Insufficient credits"


def result_url_of(name: str | None) -> str | None:
    """Where a job's result file (its stored name) is served: the one place it is computed,
    for a model (AIJob.result_url) and for a `.values()` row alike."""
    return default_storage.url(name) if name else None


class AIJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ai_jobs")
    kind = models.CharField(max_length=20, choices=JobKind.choices)
    video = models.ForeignKey("videos.Video", on_delete=models.CASCADE, related_name="ai_jobs")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    result_file = models.FileField(upload_to="ai-results/%Y/%m/", blank=True)
    error = models.TextField(blank=True)
    cost = models.PositiveIntegerField()
    charged = models.BooleanField(default=False)
    refunded = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    estimated_completion = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    rq_job_id = models.CharField(max_length=100, blank=True, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "status", "-created_at"], name="aijob_owner_status"),
            models.Index(fields=["owner", "-created_at"], name="aijob_owner_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="aijob_stalled"),
        ]
        constraints = [models.CheckConstraint(condition=Q(progress__lte=100), name="aijob_progress_at_most_100")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def result_url(self) -> str | None:
        return result_url_of(self.result_file.name)


class CreditAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="credits")
    balance = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="credit_balance_not_negative")]

    def __str__(self) -> str:
        return f"{self.user} : {self.balance}"


class CreditEntry(models.Model):
    """The ledger: every change of a balance, with why."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_entries")
    amount = models.BigIntegerField(help_text="Positive adds credits, negative spends them.")
    reason = models.CharField(max_length=200)
    job = models.ForeignKey(AIJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="credit_entries")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["user", "-created_at"], name="credit_entry_user_recent")]
