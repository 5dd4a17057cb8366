"""Block moves here from moderation: the table (moderation_block), its rows, indexes
and constraints stay as they are; only Django's state and the content type move."""

from typing import Any

import django.db.models.deletion

from django.conf import settings
from django.db import migrations, models


def move_content_type(apps: Any, schema_editor: Any) -> None:
    # Permissions and admin log entries follow the model (a fresh database has none yet).
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="accounts", model="block").exists():
        ContentType.objects.filter(app_label="moderation", model="block").update(app_label="accounts")


def move_content_type_back(apps: Any, schema_editor: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="moderation", model="block").exists():
        ContentType.objects.filter(app_label="accounts", model="block").update(app_label="moderation")


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The table is created there, and stays.
        ("moderation", "0002_block_of_any_user_id"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Block",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("blocked", models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name="blocks_received", to=settings.AUTH_USER_MODEL)),
                        ("blocker", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="blocks_made", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "db_table": "moderation_block",
                        "indexes": [models.Index(fields=["blocker", "-created_at"], name="block_blocker_recent")],
                        "constraints": [
                            models.UniqueConstraint(fields=("blocker", "blocked"), name="block_once"),
                            models.CheckConstraint(condition=models.Q(("blocker", models.F("blocked")), _negated=True), name="block_not_self"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
