"""Fill the channels' totals from their contents, as they are when this runs.

The code that keeps them (contents.totals) starts with this release: contents that move
between this migration and the new code's start (the old processes still running) leave
the counts off by those moves; `manage.py recount_channel_totals` after the deploy sets
them right, while contents move."""

from django.db import migrations

STATUSES = ("idle", "generating", "complete", "error")

FILL = f"""
INSERT INTO contents_channeltotals (channel_id, {", ".join(STATUSES)})
SELECT channel_id, {", ".join(f"count(*) FILTER (WHERE status = '{status}')" for status in STATUSES)}
FROM contents_content GROUP BY channel_id
ON CONFLICT (channel_id) DO UPDATE SET {", ".join(f"{status} = EXCLUDED.{status}" for status in STATUSES)}
"""  # noqa: S608 - constant text


class Migration(migrations.Migration):

    dependencies = [
        ("contents", "0006_channel_totals"),
    ]

    operations = [
        migrations.RunSQL(FILL, reverse_sql="DELETE FROM contents_channeltotals"),
    ]
