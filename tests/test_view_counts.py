"""Views counted in Redis and flushed into the rows: exact before and after the flush,
once per viewer within the window, through a flush that dies between its steps, and
in the database when Redis is unreachable. Likes stay in the database, exact."""

import functools
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import django_rq
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Sum
from rest_framework.test import APIClient

from moderation.services import videos_delete
from tests.helpers import api_client_for, make_user, run_burst_worker, run_concurrently
from tests.live import free_port
from tests.media import make_video
from videos import counters, services
from videos.models import Like, Video, View, ViewFlush
from videos.services import video_upload, video_view, video_views_flush
from videos.tasks import flush_view_counts

VIDEO = make_video(seconds=1)


def new_video() -> Video:
    return video_upload(owner=make_user(), file=SimpleUploadedFile("v.mp4", VIDEO), title="Clip")


def metadata_views(video: Video) -> int:
    response = APIClient().post("/v1/videos/batch-metadata", {"video_ids": [str(video.id)]}, format="json")
    assert response.status_code == 200
    return response.json()["videos"][str(video.id)]["view_count"]


def row_views(video: Video) -> int:
    return Video.objects.values_list("view_count", flat=True).get(id=video.id)


def view_rows(video: Video) -> int:
    return View.objects.filter(video=video).aggregate(total=Sum("count"))["total"] or 0


def anonymous_views(video: Video, count: int) -> None:
    for _ in range(count):
        assert video_view(video_id=video.id, user=AnonymousUser(), client_key=uuid.uuid4().hex)


def flush_on_a_worker() -> None:
    django_rq.get_queue("default").enqueue(flush_view_counts)
    run_burst_worker()


def redis_keys(pattern: str) -> list[bytes | str]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return client.keys(pattern)
    finally:
        client.close()


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_views_from_distinct_viewers_show_200_before_the_flush_and_after_it():
    video = new_video()
    statuses = []

    def view(n: int) -> None:
        statuses.append(APIClient(REMOTE_ADDR=f"10.1.{n // 250}.{n % 250}").post(f"/v1/videos/{video.id}/view").status_code)

    run_concurrently([functools.partial(view, n) for n in range(200)], workers=50)

    assert statuses == [204] * 200
    assert row_views(video) == 0  # counted in Redis: the row took none of the 200 updates
    assert metadata_views(video) == 200
    assert APIClient().get(f"/v1/videos/{video.id}").json()["view_count"] == 200

    flush_on_a_worker()

    assert row_views(video) == 200
    assert view_rows(video) == 200
    assert metadata_views(video) == 200
    assert redis_keys("videos:views:*") == []
    flush_on_a_worker()  # nothing left: nothing moves twice
    assert row_views(video) == 200


@pytest.mark.django_db(transaction=True)
def test_the_same_viewer_ten_times_in_the_window_counts_once():
    video = new_video()
    user = make_user()
    signed_in = api_client_for(user)
    run_concurrently([lambda: signed_in.post(f"/v1/videos/{video.id}/view") for _ in range(10)], workers=10)
    anonymous = [APIClient(REMOTE_ADDR="10.2.0.1", HTTP_USER_AGENT="Firefox") for _ in range(10)]
    run_concurrently([functools.partial(c.post, f"/v1/videos/{video.id}/view") for c in anonymous], workers=10)

    assert metadata_views(video) == 2  # the user once, the anonymous client once
    # Another browser at the same address, or the same one elsewhere, is another viewer.
    APIClient(REMOTE_ADDR="10.2.0.1", HTTP_USER_AGENT="Chromium").post(f"/v1/videos/{video.id}/view")
    APIClient(REMOTE_ADDR="10.2.0.2", HTTP_USER_AGENT="Firefox").post(f"/v1/videos/{video.id}/view")
    # A forwarded-for header is the client's to vary: it makes no new viewer.
    APIClient(REMOTE_ADDR="10.2.0.1", HTTP_USER_AGENT="Firefox", HTTP_X_FORWARDED_FOR="1.2.3.4").post(f"/v1/videos/{video.id}/view")
    assert metadata_views(video) == 4
    video_views_flush()
    assert row_views(video) == 4
    signed_in.post(f"/v1/videos/{video.id}/view")
    assert metadata_views(video) == 4  # the window outlives the flush



@pytest.mark.django_db
def test_anonymous_views_from_one_ipv6_network_count_as_one_viewers(settings):
    """Behind our proxy, 20 addresses of one IPv6 /64 are one client, and a loop that
    varies its User-Agent too buys at most the client's ANONYMOUS_VIEWER_SLOTS views."""
    settings.TRUSTED_PROXY_COUNT = 1
    video = new_video()

    def view(forwarded_for: str, agent: str) -> None:
        response = APIClient(REMOTE_ADDR="10.0.0.2", HTTP_USER_AGENT=agent, HTTP_X_FORWARDED_FOR=forwarded_for).post(
            f"/v1/videos/{video.id}/view"
        )
        assert response.status_code == 204

    for n in range(20):
        view(f"2001:db8:5:6:{n:x}::{n + 1:x}", "Firefox")
    assert metadata_views(video) == 1
    for n in range(20):
        view(f"2001:db8:5:6::{n + 100:x}", f"Agent {n}")
    assert metadata_views(video) <= 4
    # Another /64 is another viewer.
    before = metadata_views(video)
    view("2001:db8:5:7::1", "Firefox")
    assert metadata_views(video) == before + 1


@pytest.mark.django_db
def test_a_viewer_counts_again_once_the_window_has_passed(settings):
    settings.VIEW_DEDUP_SECONDS = 1
    video = new_video()
    viewer = make_user()
    assert video_view(video_id=video.id, user=viewer) is True
    assert video_view(video_id=video.id, user=viewer) is False
    time.sleep(1.2)
    assert video_view(video_id=video.id, user=viewer) is True
    assert metadata_views(video) == 2


@pytest.mark.django_db(transaction=True)
def test_a_flush_that_dies_between_its_steps_loses_and_doubles_nothing(monkeypatch):
    video = new_video()
    anonymous_views(video, 5)

    # 1. Dies after claiming the batch, before applying it.
    counters.views_claim()
    anonymous_views(video, 3)  # a new pending batch beside the claimed one
    assert (row_views(video), metadata_views(video)) == (0, 8)

    # 2. Dies inside the transaction that applies it: rolled back whole.
    def die(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(View.objects, "bulk_create", die)
    with pytest.raises(RuntimeError):
        video_views_flush()
    monkeypatch.undo()
    assert (row_views(video), view_rows(video), metadata_views(video)) == (0, 0, 8)
    assert not ViewFlush.objects.exists()

    # 3. Dies after the commit, before deleting the batch from Redis.
    batch = counters.views_claim()
    assert batch is not None and batch.views == {video.id: 5}
    services._views_apply(batch)
    assert (row_views(video), metadata_views(video)) == (5, 8)  # in the row and still in Redis: counted once

    # The next flush, on a real worker, applies what is left exactly once.
    anonymous_views(video, 2)
    flush_on_a_worker()
    assert (row_views(video), view_rows(video), metadata_views(video)) == (10, 10, 10)
    assert redis_keys("videos:views:*") == []


@pytest.mark.django_db(transaction=True)
def test_views_and_racing_flushes_show_every_acknowledged_view_and_no_more():
    video = new_video()
    # A view reads the row only until Redis remembers the video as visible. Remembered
    # now, the viewing threads need no database connection: Django's test client keeps a
    # thread's connection until the thread ends, and ten viewers, two flushers and three
    # readers would want fifteen of the pool's ten.
    counters.visible_remember(video.id)
    acknowledged = [0]  # views whose call returned
    started = [0]  # views whose call began
    lock = threading.Lock()
    done = threading.Event()
    reads: list[tuple[int, int, int]] = []
    flushes = [0]

    def view() -> None:
        while not done.is_set():
            with lock:
                started[0] += 1
            anonymous_views(video, 1)
            with lock:
                acknowledged[0] += 1

    def flush() -> None:
        while not done.is_set():
            video_views_flush()
            flushes[0] += 1

    def read() -> None:
        while not done.is_set():
            with lock:
                low = acknowledged[0]
            seen = metadata_views(video)
            with lock:
                high = started[0]
            reads.append((low, seen, high))

    def run(task) -> None:
        try:
            task()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(f,)) for f in [view] * 10 + [flush] * 2 + [read] * 3]
    for thread in threads:
        thread.start()
    # Until enough reads and flushes raced the views (a view costs no SQL, so ten
    # viewing threads can leave the readers few turns in a fixed time).
    deadline = time.monotonic() + 60
    while (len(reads) < 20 or flushes[0] < 5 or acknowledged[0] < 100) and time.monotonic() < deadline:
        time.sleep(0.2)
    done.set()
    for thread in threads:
        thread.join()
    video_views_flush()

    assert len(reads) >= 10 and flushes[0] >= 5 and acknowledged[0] >= 100, (len(reads), flushes, acknowledged)
    assert [r for r in reads if not r[0] <= r[1] <= r[2]] == []
    assert (row_views(video), view_rows(video), metadata_views(video)) == (acknowledged[0],) * 3


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 100])
def test_batch_metadata_with_views_in_redis_still_costs_one_query(count, django_assert_num_queries):
    videos = [new_video() for _ in range(count)]
    for video in videos:
        anonymous_views(video, 2)
    counters.views_claim()  # one batch being flushed, one pending
    for video in videos:
        anonymous_views(video, 1)
    ids = [str(v.id) for v in videos]
    with django_assert_num_queries(1):
        response = APIClient().post("/v1/videos/batch-metadata", {"video_ids": ids}, format="json")
    assert {counts["view_count"] for counts in response.json()["videos"].values()} == {3}


@pytest.mark.django_db
def test_a_view_of_a_video_seen_before_costs_no_sql(django_assert_num_queries):
    video = new_video()
    client = APIClient()
    assert client.post(f"/v1/videos/{video.id}/view", HTTP_USER_AGENT="first").status_code == 204
    with django_assert_num_queries(0):
        assert client.post(f"/v1/videos/{video.id}/view", HTTP_USER_AGENT="second").status_code == 204
    assert metadata_views(video) == 2


@pytest.mark.django_db
def test_once_moderation_hides_a_video_its_views_are_refused_and_not_counted(django_capture_on_commit_callbacks):
    video = new_video()
    client = APIClient()
    assert client.post(f"/v1/videos/{video.id}/view", HTTP_USER_AGENT="before").status_code == 204
    with django_capture_on_commit_callbacks(execute=True):
        videos_delete(video_ids=[video.id], reason="abuse", by=make_user("staff", is_staff=True))
    # A request that read the row as visible just before the hide committed...
    counters.visible_remember(video.id)
    # ...cannot make it countable again.
    assert client.post(f"/v1/videos/{video.id}/view", HTTP_USER_AGENT="after").status_code == 404
    assert client.post(f"/v1/videos/{uuid.uuid4()}/view").status_code == 404
    video_views_flush()
    assert row_views(video) == 1


@pytest.mark.django_db
def test_with_redis_unreachable_a_view_is_counted_in_the_database_and_logged(settings, caplog):
    video = new_video()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    began = time.monotonic()
    response = APIClient().post(f"/v1/videos/{video.id}/view")
    assert response.status_code == 204
    assert time.monotonic() - began < 5
    assert (row_views(video), view_rows(video)) == (1, 1)
    assert "view of" in caplog.text and "counted in the database" in caplog.text
    assert metadata_views(video) == 1
    assert APIClient().get(f"/v1/videos/{video.id}").json()["view_count"] == 1


@pytest.mark.django_db(transaction=True)
def test_likes_and_unlikes_racing_from_40_users_leave_the_count_equal_to_the_likes():
    video = new_video()
    clients = [api_client_for(make_user()) for _ in range(40)]
    rng = random.Random(7)
    tasks: list[Callable[[], Any]] = [
        functools.partial(getattr(client, method), f"/v1/videos/{video.id}/like")
        for client in clients
        for method in rng.choices(["post", "delete"], k=4)
    ]
    rng.shuffle(tasks)
    run_concurrently(tasks, workers=30)
    for client in clients[:20]:
        client.post(f"/v1/videos/{video.id}/like")
    video.refresh_from_db()
    assert video.like_count == Like.objects.filter(video=video).count() >= 20
    assert APIClient().post("/v1/videos/batch-metadata", {"video_ids": [str(video.id)]}, format="json").json()["videos"][
        str(video.id)
    ]["like_count"] == video.like_count
