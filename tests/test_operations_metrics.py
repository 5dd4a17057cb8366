"""What an on-call engineer reads beside the requests: the sweep's work, the queue's
depth and its oldest job, whether each dependency answers and how full each Redis is,
read the way a scrape reads them (core.metrics.exposition)."""

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from contents.lifecycle import CONTENT
from contents.models import Content
from core import lifecycle, metrics
from tests.factories import make_content
from tests.live import PrivateRedis

pytestmark = pytest.mark.django_db(transaction=True)


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{labels: value} of the samples called `name` in a scrape now."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
        if sample.name == name
    }


def sweep_runs(job: str, action: str) -> float:
    return samples("aistatus_sweep_runs_total").get((("action", action), ("job", job)), 0.0)


def test_the_sweeps_retries_failures_and_requeues_are_counted():
    before = {action: sweep_runs("content", action) for action in ("retried", "failed", "requeued")}
    retried, failed = make_content(), make_content()
    Content.objects.filter(id=retried.id).update(status="generating", processing_status="summarizing", job_id="lost")
    Content.objects.filter(id=failed.id).update(
        status="generating", processing_status="qa_generating", attempts=settings.CONTENT_MAX_ATTEMPTS, job_id="gone"
    )
    # A stall window after the rows were written, however long that took on a busy machine.
    stall = timezone.now() + timedelta(seconds=settings.CONTENT_STALL_SECONDS + 1)

    assert lifecycle.sweep_stalled(CONTENT, now=stall) == {"retried": 1, "failed": 1}
    lost = make_content()
    redis.Redis.from_url(settings.REDIS_URL).delete(f"rq:job:{lost.job_id}")  # as a Redis that lost it
    assert lifecycle.requeue_lost(CONTENT, now=timezone.now() + timedelta(seconds=settings.CONTENT_ENQUEUE_GRACE_SECONDS + 1)) == 1

    grown = {action: sweep_runs("content", action) - before[action] for action in before}
    assert grown == {"retried": 1, "failed": 1, "requeued": 1}
    assert sweep_runs("ai_job", "retried") == 0


def test_the_queue_reports_its_depth_its_oldest_job_and_its_workers():
    queue = (("queue", "default"),)
    assert samples("aistatus_queue_jobs") == {queue: 0}
    assert samples("aistatus_queue_oldest_job_age_seconds") == {queue: 0}

    make_content()  # its pipeline job waits: no worker runs in this test
    time.sleep(1.2)
    make_content()

    assert samples("aistatus_queue_jobs") == {queue: 2}
    assert 1.2 <= samples("aistatus_queue_oldest_job_age_seconds")[queue] < 30
    assert samples("aistatus_queue_workers") == {queue: 0}
    assert samples("aistatus_queue_failed_jobs") == {queue: 0}


def test_each_dependency_is_reported_up_or_down_and_each_redis_by_its_memory(settings, monkeypatch):
    cache = PrivateRedis()
    try:
        client = redis.Redis.from_url(cache.url)
        client.config_set("maxmemory", 64 * 1024 * 1024)
        settings.CACHE_REDIS_URL = cache.url
        up = samples("aistatus_dependency_up")
        assert up == {(("dependency", "database"),): 1, (("dependency", "redis"),): 1, (("dependency", "cache"),): 1}
        assert samples("aistatus_redis_maxmemory_bytes")[(("role", "cache"),)] == 64 * 1024 * 1024
        used = samples("aistatus_redis_used_memory_bytes")[(("role", "cache"),)]
        client.set("filler", b"x" * 4_000_000)
        assert samples("aistatus_redis_used_memory_bytes")[(("role", "cache"),)] > used + 3_000_000

        # The cache's Redis away, and PostgreSQL as from a host that cannot reach it.
        cache.stop()
        monkeypatch.setitem(settings.DATABASES["default"], "PORT", "1")
        started = time.monotonic()
        down = samples("aistatus_dependency_up")
        assert time.monotonic() - started < 10, "a scrape answers while its dependencies are away"
        assert down == {(("dependency", "database"),): 0, (("dependency", "redis"),): 1, (("dependency", "cache"),): 0}
        assert (("role", "cache"),) not in samples("aistatus_redis_used_memory_bytes")
        assert (("role", "queue"),) in samples("aistatus_redis_used_memory_bytes")
    finally:
        cache.close()
