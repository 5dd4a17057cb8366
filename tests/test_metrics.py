"""GET /metrics: refused without the metrics token, and with it, what every process of
the stack counted (this test process, the RQ work horses it forks, daphne), summed."""

import glob
import os
import shutil
import subprocess
import sys

import httpx
import pytest
from django.conf import settings
from knox.models import AuthToken
from prometheus_client.parser import text_string_to_metric_families

from contents.services import channel_create
from core import metrics
from core.periodic import periodic_job_names
from tests.helpers import api_client_for, make_user, run_burst_worker
from tests.live import ROOT, Daphne, Stack
from tests.stream_clients import SSECollector, wait_for

TOKEN = "metrics-token-for-tests"


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def scrape(daphne: Daphne) -> str:
    response = httpx.get(daphne.url("/metrics"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_do_not_exist_unless_a_token_is_configured(client, settings):
    shipped = subprocess.run(
        [sys.executable, "-c", "from config import settings; print(repr(settings.METRICS_TOKEN))"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "METRICS_TOKEN"}, capture_output=True, text=True, check=True,
    )
    assert shipped.stdout.strip() == "''"
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_are_refused_without_the_token_and_served_with_it(client, settings):
    settings.METRICS_TOKEN = TOKEN

    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert "aistatus_" not in missing.content.decode()
    for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN):
        assert client.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 401, wrong

    allowed = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert allowed.status_code == 200
    assert allowed["Content-Type"].startswith("text/plain")
    assert "aistatus_http_request_duration_seconds" in allowed.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_content_run_by_a_worker_and_streamed_by_daphne_is_counted_across_processes():
    owner = make_user("metered")
    channel = channel_create(owner=owner, name="metered")
    _, token = AuthToken.objects.create(user=owner)
    api = api_client_for(owner)
    daphne = Daphne(METRICS_TOKEN=TOKEN)
    try:
        # Other tests of the session count into the same directory: compare with before.
        before = scrape(daphne)
        sse = SSECollector(daphne.url(f"/api/contents/{channel.id}/events"), headers={"Authorization": f"Bearer {token}"})
        assert value(scrape(daphne), "aistatus_open_streams", transport="sse") == 1

        content_id = api.post(  # published by this process
            "/api/contents", {"channel_id": str(channel.id), "title": "Owls", "description": "Owls hunt at night. Mice hide."},
            format="json",
        ).json()["id"]
        run_burst_worker()  # the three stages, published by the forked work horse
        assert wait_for(lambda: len(sse.ids) >= 4, timeout=20), (sse.ids, sse.ended)

        # Polls against daphne: a 200, then a 304 for the same ETag.
        status_url = daphne.url(f"/api/contents/{channel.id}/status")
        first = httpx.get(status_url, headers={"Authorization": f"Bearer {token}"})
        again = httpx.get(status_url, headers={"Authorization": f"Bearer {token}", "If-None-Match": first.headers["ETag"]})
        assert (first.status_code, again.status_code) == (200, 304)

        after = scrape(daphne)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("aistatus_events_published_total", stream="channel", type="content_status_update") == 3
        assert delta("aistatus_events_published_total", stream="channel", type="processing_complete") == 1
        assert delta("aistatus_events_delivered_total", transport="sse") == 4
        for stage in ("uploading", "summarizing", "qa_generating"):
            assert delta("aistatus_job_stage_duration_seconds_count", job="content", stage=stage, outcome="ok") == 1, stage
            assert delta("aistatus_job_stage_duration_seconds_sum", job="content", stage=stage, outcome="ok") > 0, stage
        assert delta("aistatus_job_stage_failures_total", job="content") == 0
        assert delta("aistatus_polls_total", route="channel-status", status="200") == 1
        assert delta("aistatus_polls_total", route="channel-status", status="304") == 1
        assert delta("aistatus_http_request_duration_seconds_count", route="channel-events", method="GET", status_class="2xx") == 1
        assert delta("aistatus_cache_lookups_total", cache="stream-head:channel") >= 2
        assert value(after, "aistatus_open_streams", transport="sse") == 1
        assert content_id in {event["content_id"] for event in sse.events}

        # A killed daphne's open streams are no longer counted, and what it counted stays.
        daphne.process.kill()
        daphne.process.wait()
        sse.close()
        left_behind = metrics.exposition().decode()
        assert value(left_behind, "aistatus_open_streams", transport="sse") == 0
        assert value(left_behind, "aistatus_events_delivered_total", transport="sse") == value(
            after, "aistatus_events_delivered_total", transport="sse"
        )
        # Gone processes (the work horse, the killed daphne) were folded into the archive.
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        pids = {os.path.basename(f)[:-3].split("_")[-1] for f in glob.glob(os.path.join(directory, "*.db"))}
        assert pids <= {"archive", str(os.getpid())}, pids
    finally:
        daphne.close()


def label_sets(text: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """{(label values...): value} of the samples called `name`."""
    return {
        tuple(sample.labels[label] for label in labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.mark.django_db(transaction=True)
def test_a_fresh_stacks_first_scrape_has_every_family_with_its_zero_series():
    stack = Stack(redis_url=settings.REDIS_URL, METRICS_TOKEN=TOKEN, WEB_WORKERS="1")
    try:
        first = httpx.get(stack.url("/metrics"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    finally:
        stack.stop()
        shutil.rmtree(ROOT / ".run" / f"metrics-{stack.port}", ignore_errors=True)  # run_stack.sh's, left at exit
    assert first.status_code == 200, first.text
    text = first.text

    transports: set[tuple[str, ...]] = {("sse",), ("ws",)}
    zero_families: dict[str, tuple[tuple[str, ...], set[tuple[str, ...]]]] = {
        "aistatus_events_published_total": (("stream", "type"), {
            ("channel", "content_status_update"), ("channel", "processing_complete"), ("channel", "processing_error"),
            ("user", "ai_job_update"), ("user", "notification"),
        }),
        "aistatus_events_delivered_total": (("transport",), transports),
        "aistatus_stream_replays_total": (("transport",), transports),
        "aistatus_stream_resyncs_total": (("transport",), transports),
        "aistatus_open_streams": (("transport",), transports),
        "aistatus_stream_endings_total": (("transport", "reason"), {
            *(("sse", reason) for reason in (
                "lifetime", "revoked", "credential_revoked", "credential_expired", "resync", "error", "client_gone",
                "shutdown",
            )),
            *(("ws", reason) for reason in (
                "lifetime", "revoked", "forbidden", "credential_revoked", "credential_expired", "error",
                "too_many_messages", "message_too_large", "client_gone", "shutdown",
            )),
        }),
        "aistatus_delivery_drops_total": (("reason",), {("wakeup_not_sent",), ("wakeup_missed",), ("table_unreadable",)}),
        "aistatus_job_stage_duration_seconds_count": (("job", "stage", "outcome"), {
            (job, stage, outcome)
            for job, stages in (("content", ("uploading", "summarizing", "qa_generating")), ("ai_job", ("glitch", "remix")))
            for stage in stages
            for outcome in ("ok", "failed", "stopped")
        }),
        "aistatus_job_stage_failures_total": (("job", "stage"), {
            ("content", "uploading"), ("content", "summarizing"), ("content", "qa_generating"),
            ("ai_job", "glitch"), ("ai_job", "remix"),
        }),
        "aistatus_sweep_runs_total": (("job", "action"), {
            (job, action) for job in ("content", "ai_job") for action in ("requeued", "retried", "failed")
        }),
        "aistatus_event_wakeup_lag_seconds_count": ((), {()}),
        "aistatus_db_pool_timeouts_total": ((), {()}),
    }
    for name, (labels, expected) in zero_families.items():
        series = label_sets(text, name, *labels)
        assert set(series) == expected, (name, set(series) ^ expected)
        assert set(series.values()) == {0.0}, (name, series)

    # Every periodic job's runs by outcome exist from the first scrape; the cron enqueues
    # the first period's jobs as it starts, so a quick worker may have run some already.
    periodic = label_sets(text, "aistatus_periodic_runs_total", "job", "outcome")
    expected_periodic = {(name, outcome) for name in periodic_job_names() for outcome in ("ran", "failed", "overlapping")}
    assert len(expected_periodic) == 18
    assert set(periodic) == expected_periodic, set(periodic) ^ expected_periodic

    # The pool is sampled per process: the web worker's, with its bound. (Its first
    # caller waited while the pool opened its first connection: waits are counted.)
    pools = label_sets(text, "aistatus_db_pool_max_connections", "pid")
    assert 10.0 in pools.values(), pools
    assert {state for state, _pid in label_sets(text, "aistatus_db_pool_connections", "state", "pid")} == {"in_use", "idle"}
    assert set(label_sets(text, "aistatus_db_pool_waiting", "pid").values()) == {0.0}
    for name in ("aistatus_db_pool_waits_total", "aistatus_db_pool_wait_seconds_total"):
        assert set(label_sets(text, name)) == {()}, name
    # Read at the scrape: every dependency answers, each Redis role's memory, the queue.
    assert label_sets(text, "aistatus_dependency_up", "dependency") == {("database",): 1, ("redis",): 1, ("cache",): 1}
    assert set(label_sets(text, "aistatus_redis_used_memory_bytes", "role")) == {("queue",), ("cache",)}
    assert all(used > 0 for used in label_sets(text, "aistatus_redis_used_memory_bytes", "role").values())
    assert set(label_sets(text, "aistatus_redis_maxmemory_bytes", "role")) == {("queue",), ("cache",)}
    # The queue's series are there; its depth and oldest job's age are whatever they are
    # (the cron enqueues the first period's periodic jobs as it starts, before the worker
    # may have taken them), and nothing has failed.
    for name in ("aistatus_queue_jobs", "aistatus_queue_oldest_job_age_seconds"):
        assert set(label_sets(text, name, "queue")) == {("default",)}, name
    assert label_sets(text, "aistatus_queue_failed_jobs", "queue") == {("default",): 0}
    assert set(label_sets(text, "aistatus_queue_workers", "queue")) == {("default",)}
    # The health checks that saw the stack up were counted before the scrape.
    assert label_sets(text, "aistatus_http_request_duration_seconds_count", "route").get(("healthz",), 0) >= 1
