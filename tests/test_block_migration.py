"""Block moved from moderation to accounts without touching its table: the blocks made
before the move are the blocks read after it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("moderation", "0002_block_of_any_user_id"), ("accounts", "0001_initial")]
AFTER = [("moderation", "0003_block_moved_to_accounts")]


@pytest.mark.django_db(transaction=True)
def test_blocks_made_before_the_move_to_accounts_are_kept_and_read_from_accounts():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    User = old_apps.get_model("accounts", "User")
    OldBlock = old_apps.get_model("moderation", "Block")
    blocker, blocked = User.objects.create(username="blocker"), User.objects.create(username="blocked")
    old = OldBlock.objects.create(blocker=blocker, blocked=blocked)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new_apps = executor.loader.project_state(AFTER).apps
    Block = new_apps.get_model("accounts", "Block")
    assert "block" not in new_apps.all_models["moderation"]
    assert list(Block.objects.values_list("id", "blocker_id", "blocked_id")) == [(old.id, blocker.id, blocked.id)]

    # Leave the schema as the rest of the suite expects it.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
