"""The migration that introduces the status columns backfills older rows."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("contents", "0001_initial")]
AFTER = [("contents", "0004_content_status_constraints")]


@pytest.mark.django_db(transaction=True)
def test_rows_created_before_the_status_columns_are_backfilled_from_their_ai_result():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    User = old_apps.get_model("accounts", "User")
    Channel = old_apps.get_model("contents", "Channel")
    Content = old_apps.get_model("contents", "Content")
    owner = User.objects.create(username="old-timer")
    channel = Channel.objects.create(name="legacy", owner=owner)
    with_result = Content.objects.create(channel=channel, provider=owner, url="https://example.com/a",
                                         ai_gen_metadata={"summary": "done", "qa_list": []})
    without_result = Content.objects.create(channel=channel, provider=owner, url="https://example.com/b")
    empty_result = Content.objects.create(channel=channel, provider=owner, url="https://example.com/c", ai_gen_metadata={})

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new_apps = executor.loader.project_state(AFTER).apps
    Content = new_apps.get_model("contents", "Content")

    done = Content.objects.get(id=with_result.id)
    assert (done.status, done.processing_status, done.progress) == ("complete", "completed", 100)
    assert done.finished_at is not None
    for pending_id in (without_result.id, empty_result.id):
        pending = Content.objects.get(id=pending_id)
        assert (pending.status, pending.processing_status, pending.progress) == ("idle", "uploading", 0)

    # Leave the schema as the rest of the suite expects it.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
