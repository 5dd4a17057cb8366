"""A channel's totals are kept, not counted (contents.totals): every change of a
content's status (a submit, each move, a deletion) changes its channel's row in the
same transaction, so the totals equal a COUNT of the channel's contents even after
many concurrent moves, and the status answer reads that one row whatever the
channel's size."""

import io
import json
import random
import re
import threading
from datetime import timedelta

import django_rq
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contents.lifecycle import ALLOWED_TRANSITIONS
from contents.models import ChannelTotals, Content, ContentStatus, ProcessingStatus
from contents.services import channel_add_members, content_move, content_restart, content_submit, content_sweep
from contents.totals import STATUSES, totals_get, totals_recount
from core.errors import Conflict
from tests.factories import make_channel, make_content, moved
from tests.helpers import api_client_for, make_user, run_concurrently

Stage = ProcessingStatus
TOTALS_TABLE = ChannelTotals._meta.db_table
CONTENTS_TABLE = Content._meta.db_table


def counted(channel) -> dict[str, int]:
    """The channel's contents by status, counted: what the totals must equal."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in Content.objects.filter(channel=channel).values("status").annotate(n=Count("*")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def answered_totals(client, channel) -> dict[str, int]:
    body = client.get(f"/api/contents/{channel.id}/status").json()
    return {key: body[key] for key in ("total_processing", "total_completed", "total_failed")}


def as_answered(counts: dict[str, int]) -> dict[str, int]:
    return {
        "total_processing": counts["idle"] + counts["generating"],
        "total_completed": counts["complete"],
        "total_failed": counts["error"],
    }


def test_the_totals_have_a_column_for_each_content_status():
    assert {f.name for f in ChannelTotals._meta.get_fields()} - {"channel"} == set(ContentStatus.values) == set(STATUSES)


@pytest.mark.django_db
def test_every_edge_of_the_pipeline_keeps_the_totals_equal_to_a_count(django_capture_on_commit_callbacks):
    owner = make_user("owner")
    channel = make_channel(owner=owner)
    client = api_client_for(owner)
    content = make_content(channel)
    assert totals_get(channel.id) == counted(channel) == {"idle": 1, "generating": 0, "complete": 0, "error": 0}
    walk = [Stage.SUMMARIZING, Stage.QA_GENERATING, Stage.COMPLETED, Stage.UPLOADING, Stage.SUMMARIZING, Stage.FAILED,
            Stage.UPLOADING, Stage.FAILED, Stage.UPLOADING, Stage.SUMMARIZING, Stage.QA_GENERATING, Stage.FAILED]
    for to in walk:
        with django_capture_on_commit_callbacks(execute=True):  # committed: the stream's head moves on
            content = moved(content_move(content, to=to, error_message="It broke."))
        assert totals_get(channel.id) == counted(channel), f"after the move to {to}"
        assert answered_totals(client, channel) == as_answered(counted(channel))


@pytest.mark.django_db
def test_a_move_someone_else_made_first_changes_the_totals_once():
    channel = make_channel()
    content = make_content(channel)
    stale = Content.objects.get(id=content.id)
    moved(content_move(content, to=Stage.SUMMARIZING))
    assert content_move(stale, to=Stage.FAILED) is None  # read before the other move: refused
    assert totals_get(channel.id) == counted(channel) == {"idle": 0, "generating": 1, "complete": 0, "error": 0}


@pytest.mark.django_db(transaction=True)
def test_totals_equal_a_count_after_many_concurrent_moves_submits_restarts_sweeps_and_recounts(settings):
    """Two walkers race on each content (the loser's move writes nothing, it reads again
    and goes on), new contents arrive, finished ones are retried and regenerated, the
    sweep fails stalled ones, and recounts run meanwhile: no count is lost, no deadlock."""
    owner = make_user("owner")
    channel, other = make_channel(owner=owner), make_channel(owner=owner, name="other")
    contents = [make_content(channel) for _ in range(24)]
    bystanders = [make_content(other) for _ in range(3)]
    # Some runs stalled on their last attempt, their jobs gone: the sweep fails them while walkers move them.
    django_rq.get_queue("default").empty()
    stalled = [c.id for c in contents[:6]]
    Content.objects.filter(id__in=stalled).update(heartbeat_at=timezone.now() - timedelta(hours=1),
                                                  attempts=settings.CONTENT_MAX_ATTEMPTS)
    outcomes = {"moved": 0, "lost": 0, "restarted": 0, "refused": 0}
    lock = threading.Lock()

    def tally(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    def walker(content_id, seed: int):
        def walk():
            rng = random.Random(seed)
            for _ in range(10):
                content = Content.objects.get(id=content_id)
                if content.processing_status in (Stage.COMPLETED, Stage.FAILED):
                    try:
                        content_restart(content)  # a retry or a regenerate
                        tally("restarted")
                    except Conflict:
                        tally("refused")  # the other walker restarted it first
                else:
                    to = rng.choice(sorted(ALLOWED_TRANSITIONS[content.processing_status]))
                    done = content_move(content, to=to, error_message="It broke.")
                    tally("moved" if done else "lost")  # lost: the other walker moved it first
        return walk

    tasks = [walker(c.id, seed) for n, c in enumerate(contents) for seed in (2 * n, 2 * n + 1)]
    tasks += [lambda: content_submit(channel=channel, provider=owner, title="new") for _ in range(10)]
    tasks += [content_sweep for _ in range(3)]
    tasks += [lambda: totals_recount(channel.id) for _ in range(4)]
    random.Random(20).shuffle(tasks)
    run_concurrently(tasks, workers=8)

    assert Content.objects.filter(channel=channel).count() == 34
    assert outcomes["moved"] > 100 and outcomes["restarted"] > 10, outcomes
    assert totals_get(channel.id) == counted(channel), outcomes
    assert totals_get(other.id) == counted(other) == {"idle": len(bystanders), "generating": 0, "complete": 0, "error": 0}
    assert answered_totals(api_client_for(owner), channel) == as_answered(counted(channel))


def cold_status_queries(client, channel) -> list[str]:
    """The SQL of a status request with nothing in the cache."""
    cache.clear()
    with CaptureQueriesContext(connection) as captured:
        assert client.get(f"/api/contents/{channel.id}/status").status_code == 200
    return [q["sql"] for q in captured]


def blanked(statements: list[str], channel) -> list[str]:
    return [sql.replace(str(channel.id), "?").replace(channel.id.hex, "?") for sql in statements]


def plan_nodes(sql: str) -> list[dict]:
    """The nodes of the query's plan as it ran (EXPLAIN ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        nodes.append(node := todo.pop())
        todo.extend(node.get("Plans", []))
    return nodes


def one_of_each_status(channel) -> None:
    make_content(channel)
    moved(content_move(make_content(channel), to=Stage.SUMMARIZING))
    moved(content_move(make_content(channel), to=Stage.FAILED, error_message="It broke."))
    done = moved(content_move(make_content(channel), to=Stage.SUMMARIZING))
    moved(content_move(moved(content_move(done, to=Stage.QA_GENERATING)), to=Stage.COMPLETED))


@pytest.mark.django_db
def test_the_status_answer_reads_its_totals_from_one_row_whatever_the_channels_size():
    owner = make_user("owner")
    client = api_client_for(owner)
    small, large = make_channel(owner=owner, name="small"), make_channel(owner=owner, name="large")
    one_of_each_status(small)
    one_of_each_status(large)
    # Thousands more finished contents in the large channel, older than hundreds more
    # waiting ones, inserted as the benchmark does, then counted once.
    now = timezone.now()
    Content.objects.bulk_create([
        Content(channel=large, provider=owner, title=f"c{i}", status=ContentStatus.COMPLETE, processing_status=Stage.COMPLETED,
                progress=100, finished_at=now - timedelta(minutes=1, seconds=i), version=4) for i in range(3000)
    ] + [Content(channel=large, provider=owner, title=f"w{i}") for i in range(300)])
    Content.objects.filter(channel=large, title__startswith="c").update(created_at=now - timedelta(days=1))
    totals_recount(large.id)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {CONTENTS_TABLE}")  # as autovacuum would have by then

    small_sql, large_sql = cold_status_queries(client, small), cold_status_queries(client, large)

    assert blanked(large_sql, large) == blanked(small_sql, small)  # the same statements for 4 or 3,304 contents
    assert answered_totals(client, large) == as_answered(counted(large)) == {
        "total_processing": 302, "total_completed": 3001, "total_failed": 1}
    # The totals: one query, whose plan reads the totals table alone.
    totals = [sql for sql in large_sql if TOTALS_TABLE in sql]
    assert len(totals) == 1
    assert {node["Relation Name"] for node in plan_nodes(totals[0]) if "Relation Name" in node} == {TOTALS_TABLE}
    # Every other read of the channel's contents is a list of at most 100, read from an
    # index that holds just what it lists, in its order: none counts them, none reads
    # more rows than it lists.
    on_contents = [sql for sql in large_sql if CONTENTS_TABLE in sql]
    assert len(on_contents) == 3, on_contents  # processing, completed, failed
    for sql in on_contents:
        assert "COUNT(" not in sql.upper() and re.search(r"LIMIT 100\b", sql), sql
        nodes = plan_nodes(sql)
        assert "Seq Scan" not in {node["Node Type"] for node in nodes}, sql
        assert sum(node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0) for node in nodes) == 0, sql
        # (an incremental sort of the ties of the 100th may read one group more)
        assert max(node["Actual Rows"] for node in nodes if "Relation Name" in node) < 150, sql


def admin_client():
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db
def test_deleting_a_user_in_the_admin_takes_the_contents_they_provided_out_of_every_channels_totals():
    owner, member, other_member = make_user("owner"), make_user("member"), make_user("other-member")
    channel = make_channel(owner=owner)
    channel_add_members(channel=channel, user_ids=[member.id, other_member.id])
    one_of_each_status(channel)
    for provider in (member, other_member):
        make_content(channel, provider=provider)
        moved(content_move(make_content(channel, provider=provider), to=Stage.FAILED, error_message="It broke."))
    admin = admin_client()

    assert admin.post(f"/admin/accounts/user/{member.id}/delete/", {"post": "yes"}).status_code == 302
    assert admin.post("/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [str(other_member.id)],
                                                "post": "yes"}).status_code == 302

    assert not Content.objects.filter(provider__in=[member, other_member]).exists()
    assert totals_get(channel.id) == counted(channel) == {"idle": 1, "generating": 1, "complete": 1, "error": 1}
    assert answered_totals(api_client_for(owner), channel) == as_answered(counted(channel))


@pytest.mark.django_db
def test_deleting_a_channels_owner_deletes_its_totals_with_it():
    owner = make_user("owner")
    channel = make_channel(owner=owner)
    one_of_each_status(channel)
    assert admin_client().post(f"/admin/accounts/user/{owner.id}/delete/", {"post": "yes"}).status_code == 302
    assert not ChannelTotals.objects.filter(channel_id=channel.id).exists()


@pytest.mark.django_db
def test_the_recount_command_sets_totals_changed_behind_the_services_right():
    channel, untouched = make_channel(), make_channel(name="untouched")
    one_of_each_status(channel)
    one_of_each_status(untouched)
    Content.objects.filter(channel=channel, status=ContentStatus.IDLE).update(
        status=ContentStatus.COMPLETE, processing_status=Stage.COMPLETED)  # by hand, behind the services
    out = io.StringIO()
    call_command("recount_channel_totals", stdout=out)
    assert totals_get(channel.id) == counted(channel) == {"idle": 0, "generating": 1, "complete": 2, "error": 1}
    assert f"{channel.id}: idle 1 -> 0, complete 1 -> 2" in out.getvalue()
    assert "2 channels recounted, 1 of them differed." in out.getvalue()


MIGRATED_FROM, FILLED = [("contents", "0005_membership_of_any_user_id")], [("contents", "0007_fill_channel_totals")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_totals_of_contents_created_before_it():
    executor = MigrationExecutor(connection)
    executor.migrate(MIGRATED_FROM)
    old_apps = executor.loader.project_state(MIGRATED_FROM).apps
    User, Channel = old_apps.get_model("accounts", "User"), old_apps.get_model("contents", "Channel")
    OldContent = old_apps.get_model("contents", "Content")
    owner = User.objects.create(username="old-timer")
    busy, quiet, _empty = (Channel.objects.create(name=name, owner=owner) for name in ("busy", "quiet", "empty"))
    for channel, states in ((busy, ["idle", "idle", "generating", "complete", "complete", "complete", "error"]), (quiet, ["complete"])):
        for status in states:
            stage = {"idle": "uploading", "generating": "summarizing", "complete": "completed", "error": "failed"}[status]
            OldContent.objects.create(channel=channel, provider=owner, url="https://example.com/", status=status, processing_status=stage)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(FILLED)
    Totals = executor.loader.project_state(FILLED).apps.get_model("contents", "ChannelTotals")
    filled = {t.channel_id: (t.idle, t.generating, t.complete, t.error) for t in Totals.objects.all()}
    assert filled == {busy.id: (2, 1, 3, 1), quiet.id: (0, 0, 1, 0)}  # a channel with no contents needs no row

    # Leave the schema as the rest of the suite expects it.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
