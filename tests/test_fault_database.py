"""PostgreSQL connections killed under load (`pg_terminate_backend`): the requests in
flight fail cleanly, the next ones work, and no content or AI job is left
generating/processing, well before the 90 s stall sweep could have rescued it.

A real daphne, real `manage.py rqworker` processes and the cron scheduler (as
scripts/run_stack.sh starts them, with the default sweep timing) serve the test
database while threads drive HTTP load; meanwhile the test terminates every other
backend of the test database a few times (its own connection, which only reads,
survives)."""

import logging
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import django_rq
import httpx
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rq.exceptions import NoSuchJobError
from rq.job import Job

from aijobs.models import AIJob, CreditAccount, CreditEntry, JobStatus
from contents.models import ACTIVE_STAGES, Content
from contents.services import channel_create
from core.heartbeat import keep_alive
from tests.helpers import kill_tree, make_user, wait_for
from tests.live import ROOT, Daphne, subprocess_env
from tests.media import make_video
from tests.openai_stub import OpenAICompatibleServer
from videos.services import video_upload

pytestmark = pytest.mark.django_db(transaction=True)
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown a failure's report

KILLS = 5
KILL_EVERY = 0.7  # seconds: each kill lands on the connections opened since the last one
REQUEST_TIMEOUT = 15.0  # an answer slower than this counts as a hung request
# What a killed connection interrupted must end on its own, or (a create whose commit
# landed but whose answer was lost, so its enqueue never ran) through the lost-enqueue
# sweep within CONTENT_ENQUEUE_GRACE_SECONDS + CONTENT_SWEEP_INTERVAL: well before the
# 90 s stall sweep.
SETTLE_SECONDS = 45
TIDES = "Tide pools hold water at low tide. Starfish live there. Crabs hide under rocks."


def terminate_other_backends() -> int:
    """Kill every connection to the test database but this one; how many were killed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def terminate_backends_of_this_process() -> int:
    """Kill the connections this test process holds to the test database but this one
    (config/settings_test.py names each process's connections after its pid): not those
    an earlier test's servers and workers hold while they are still shutting down."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = %s",
            [settings.DATABASES["default"]["OPTIONS"]["application_name"]],
        )
        return cursor.fetchone()[0]


def start_process(log: Path, *command: str, **env: str) -> subprocess.Popen:
    """`manage.py <command>` against the test database and Redis, logging to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=subprocess_env(**env),
            start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
        )


@dataclass
class Answer:
    method: str
    path: str
    status: int | None  # None: no answer at all (timed out, connection reset)
    content_type: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def clean(self) -> bool:
        """A success, or a server error told as a problem document: never a hang, a
        reset connection or Django's HTML debug page."""
        return self.ok or (
            self.status is not None and self.status >= 500 and self.content_type.startswith("application/problem+json")
        )


class Load:
    """A few client threads sending the app's usual requests to daphne until stopped:
    submitting contents (the first thread), reading them one by one and in batches,
    listing the channel, polling the AI jobs and the balance."""

    def __init__(self, server: Daphne, *, token: str, channel_id: str, job_ids: list[str], threads: int = 3) -> None:
        self.server, self.channel_id, self.job_ids = server, channel_id, job_ids
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answers: list[Answer] = []
        self.content_ids: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.drive, args=(n == 0,), daemon=True) for n in range(threads)]

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT + 5)

    def send(self, client: httpx.Client, method: str, path: str, body: dict | None = None) -> dict | None:
        try:
            response = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            answer = Answer(method, path, None, "", f"{exc.__class__.__name__}: {exc}")
        else:
            answer = Answer(method, path, response.status_code, response.headers.get("content-type", ""), response.text[:300])
        with self.lock:
            self.answers.append(answer)
        return response.json() if answer.ok else None

    def round(self, client: httpx.Client, *, submit: bool = True) -> list[Answer]:
        """One of each request; the answers it got."""
        before = len(self.answers)
        created = submit and self.send(
            client, "POST", "/api/contents", {"channel_id": self.channel_id, "title": "Tides", "description": TIDES}
        )
        if created:
            with self.lock:
                self.content_ids.append(created["id"])
            self.send(client, "GET", f"/api/contents/{created['id']}")
        with self.lock:
            recent = self.content_ids[-50:]
        if recent:
            self.send(client, "POST", "/api/contents/status/batch", {"content_ids": recent})
        self.send(client, "GET", f"/api/contents/channel/{self.channel_id}")
        self.send(client, "POST", "/v1/ai/jobs/batch-status", {"job_ids": self.job_ids})
        self.send(client, "GET", f"/v1/ai/jobs/{self.job_ids[0]}")
        self.send(client, "GET", "/v1/credits")
        with self.lock:
            return self.answers[before:]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url(""), headers=self.headers, timeout=REQUEST_TIMEOUT)

    def drive(self, submit: bool) -> None:
        with self.client() as client:
            while not self.stop.is_set():
                self.round(client, submit=submit)
                time.sleep(0.2)  # enough contents to keep the workers busy, not a backlog


def still_running() -> list[str]:
    contents = [f"content {c.id} {c.processing_status} (RQ job {queue_status(c.job_id)})"
                for c in Content.objects.filter(processing_status__in=ACTIVE_STAGES)]
    jobs = [f"AI job {j.id} {j.status} (RQ job {queue_status(j.rq_job_id)})"
            for j in AIJob.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.PROCESSING])]
    return contents + jobs


def queue_status(rq_job_id: str) -> str:
    try:
        return Job.fetch(rq_job_id, connection=django_rq.get_connection("default")).get_status()
    except NoSuchJobError:
        return "unknown to the queue"


def test_killed_database_connections_under_load_fail_requests_cleanly_and_leave_nothing_generating():
    owner = make_user("owner")
    _, token = AuthToken.objects.create(user=owner)
    channel = channel_create(owner=owner, name="Tides")
    # Long enough that the first job is still rendering through every kill.
    long_video = video_upload(owner=owner, file=SimpleUploadedFile("long.mp4", make_video(seconds=60, fps=25)), title="Long")
    short_video = video_upload(owner=owner, file=SimpleUploadedFile("short.mp4", make_video(seconds=2, fps=10)), title="Short")

    # One user's few threads would meet the production rate limit, which is not what this is about.
    server = Daphne(THROTTLE_USER="100000/min")
    log = Path(tempfile.mkstemp(prefix="workers-", suffix=".log")[1])
    # An AI provider that takes a moment, as a real one does: a content's worker holds its
    # connection through the call, so a kill then fails the stage's next write.
    ai = OpenAICompatibleServer(delay=0.3)
    worker = ["rqworker", "default", "--worker-class", "core.worker.DjangoWorker"]
    ai_env = {"AI_PROVIDER": "openai", "AI_BASE_URL": ai.url("/v1")}
    processes = [start_process(log, *worker, **ai_env), start_process(log, *worker, **ai_env), start_process(log, "run_cron")]
    headers = {"Authorization": f"Bearer {token}"}

    def create_job(video, **params) -> str:
        response = httpx.post(server.url("/v1/ai/jobs"), headers=headers, timeout=REQUEST_TIMEOUT,
                              json={"kind": "glitch", "video_id": str(video.id), "params": params})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    try:
        long_job = create_job(long_video, intensity=0.6)
        wait_for(lambda: AIJob.objects.get(id=long_job).progress > 0, timeout=60, what="the long AI job to make progress")
        # Queued now, started (and charged) by the workers while the kills go on.
        job_ids = [long_job] + [create_job(short_video) for _ in range(3)]

        with Load(server, token=token, channel_id=str(channel.id), job_ids=job_ids) as load:
            wait_for(lambda: len(load.content_ids) >= 3, what="the load to get going")
            killed, long_job_states = [], []
            for _ in range(KILLS):
                long_job_states.append(AIJob.objects.get(id=long_job).status)
                killed.append(terminate_other_backends())
                time.sleep(KILL_EVERY)
            time.sleep(0.5)
        during = list(load.answers)  # every answer until the load stopped, those in flight at a kill included
        with load.client() as client:
            after = load.round(client)

        assert sum(killed) >= KILLS, f"the kills should have found connections to end: {killed}"
        assert long_job_states[0] == JobStatus.PROCESSING, "the kills should land on a rendering job"
        unclean = [a for a in during if not a.clean]
        assert not unclean, f"{len(unclean)} of {len(during)} answers were not clean, e.g. {unclean[:3]}"
        assert len(after) == 7 and all(a.ok for a in after), after

        started = time.monotonic()
        try:
            wait_for(lambda: not still_running(), timeout=SETTLE_SECONDS, what="every content and AI job to finish")
        except AssertionError:
            raise AssertionError(
                f"still running after {SETTLE_SECONDS} s: {still_running()[:10]}\nworkers' log:\n{log.read_text()[-6000:]}"
            ) from None
        settled_in = time.monotonic() - started
    finally:
        for process in processes:
            kill_tree(process.pid)
            process.wait(10)
        server.close()
        ai.close()
    log.unlink()

    contents = list(Content.objects.filter(channel=channel))
    assert set(load.content_ids) <= {str(c.id) for c in contents}
    # A killed connection is not a reason for a content to fail: its step is tried again.
    assert [(c.status, c.error_message) for c in contents if c.status != "complete"] == []

    # The long job rendered through every kill: losing a connection must not lose the work.
    assert AIJob.objects.get(id=long_job).status == JobStatus.COMPLETED
    jobs = list(AIJob.objects.filter(owner=owner))
    assert {j.status for j in jobs} <= {JobStatus.COMPLETED, JobStatus.FAILED}
    for job in jobs:  # paid exactly when completed, and every charge and refund in the ledger once
        assert (job.charged and not job.refunded) == (job.status == JobStatus.COMPLETED), job
        entries = sorted(CreditEntry.objects.filter(job=job).values_list("amount", flat=True))
        assert entries == ([-job.cost, job.cost] if job.refunded else [-job.cost] if job.charged else []), (job, entries)
    balance = CreditAccount.objects.get(user=owner).balance
    assert balance == settings.CREDITS_NEW_ACCOUNT_GRANT - sum(j.cost for j in jobs if j.status == JobStatus.COMPLETED)
    assert balance == sum(CreditEntry.objects.filter(user=owner).values_list("amount", flat=True))
    print(f"\n{len(during)} answers during the fault, {sum(not a.ok for a in during)} of them problems; kills {killed}; "
          f"{len(contents)} contents and {len(jobs)} AI jobs settled {settled_in:.1f} s after the fault")


def test_the_heartbeat_outlives_a_killed_connection():
    owner = make_user("owner")
    channel = channel_create(owner=owner, name="Beat")
    content = Content.objects.create(channel=channel, provider=owner, title="t", job_id="run-1", heartbeat_at=None)

    def last_beat():
        return Content.objects.get(id=content.id).heartbeat_at

    with keep_alive(Content, seconds=0.2, id=content.id, job_id="run-1"):
        wait_for(lambda: last_beat() is not None, what="the first beat")
        assert terminate_backends_of_this_process() == 1, "the heartbeat's own connection"
        killed_at = timezone.now()
        wait_for(lambda: last_beat() > killed_at, timeout=5, what="a beat after the kill")
        assert terminate_backends_of_this_process() == 1, "the heartbeat connected again"
