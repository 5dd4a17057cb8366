"""Block now lives in accounts (accounts.0002_block): moderation forgets it in Django's
state only; the table and its rows stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0002_block_of_any_user_id"),
        ("accounts", "0002_block"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Block")],
            database_operations=[],
        ),
    ]
