import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models, transaction
from django.db.models import Q


class User(AbstractUser):
    """A person using the app; ids are UUIDs that clients treat as opaque.

    Saving a new password revokes every credential of the user but the one in use
    (accounts.services.credentials_revoke_for_password_change), in the same
    transaction as the password: the change page, a reset, the admin's password form,
    `manage.py changepassword` and anything else that calls set_password() and save()
    all pass here. A hash upgraded at login (check_password) is no change."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    # set_unusable_password() marks the change here; set_password() in `_password`.
    _password_made_unusable = False

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self._password_made_unusable = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        # AbstractBaseUser keeps the raw password set_password() got in `_password` until
        # saved (django-stubs do not declare it).
        new_password = getattr(self, "_password", None)
        changed = (new_password is not None or self._password_made_unusable) and not self._state.adding
        if not changed:
            super().save(*args, **kwargs)
            return
        from accounts.credentials import credential_in_use
        from accounts.services import credentials_revoke_for_password_change

        with transaction.atomic():
            super().save(*args, **kwargs)
            credentials_revoke_for_password_change(self, keep=credential_in_use(self))
        self._password_made_unusable = False


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
