import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q


class User(AbstractUser):
    """A person using the app; ids are UUIDs that clients treat as opaque."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)


class Block(models.Model):
    """`blocker` no longer sees `blocked`'s videos and comments, nor hears of their likes,
    comments and remixes. `blocked` is not a database foreign key: any user id can be
    blocked, and whether an account has it is never told (a nonexistent id gets the same
    answer, and the same row, as an existing one). Django still deletes the blocks of a
    deleted user (on_delete).

    Here, beside the users, because who may see whom is read by videos and notifications
    (moderation, on top, only writes blocks); the table keeps the name it had in
    moderation."""

    blocker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blocks_made")
    blocked = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blocks_received", db_constraint=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "moderation_block"
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="block_once"),
            models.CheckConstraint(condition=~Q(blocker=models.F("blocked")), name="block_not_self"),
        ]
        indexes = [models.Index(fields=["blocker", "-created_at"], name="block_blocker_recent")]
