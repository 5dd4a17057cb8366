"""Rows that predate the status columns: `complete`/`completed` where the AI result
is present, `idle`/`uploading` (the columns' default) otherwise."""

from django.db import migrations
from django.db.models import F, JSONField, Q, Value


def has_ai_result() -> Q:
    return Q(ai_gen_metadata__isnull=False) & ~Q(ai_gen_metadata=Value(None, JSONField())) & ~Q(ai_gen_metadata={})


def backfill(apps, schema_editor):
    Content = apps.get_model("contents", "Content")
    Content.objects.filter(has_ai_result()).update(
        status="complete", processing_status="completed", progress=100, finished_at=F("updated_at")
    )
    Content.objects.exclude(has_ai_result()).update(status="idle", processing_status="uploading", progress=0)


class Migration(migrations.Migration):
    dependencies = [("contents", "0002_content_status")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
