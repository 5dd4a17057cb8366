"""The status answer's processing list read from an index of the processing contents
alone. Built concurrently: contents keep being written while it builds."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("contents", "0007_fill_channel_totals"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="content",
            index=models.Index(
                condition=models.Q(("status__in", ("idle", "generating"))),
                fields=["channel", "created_at", "id"],
                name="content_channel_processing",
            ),
        ),
    ]
