"""Partial AI results pushed as they are generated (issue 21): a real RQ worker runs the
pipeline against a streaming OpenAI-compatible stub (or the embedded provider), a real
daphne serves the channel's SSE and WebSocket streams, and the clients see the summary
grow, the version rise and the progress move inside a stage."""

import functools
import itertools
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from knox.models import AuthToken

from contents.ai.openai import OpenAICompatibleProvider
from contents.eta import forget_stage_averages, refine_completion
from contents.lifecycle import CONTENT
from contents.models import Content, StageRun
from contents.progress import Fenced, PartialWriter, expected_output, progress_within
from contents.services import channel_create
from core import lifecycle
from realtime.models import Event
from tests.factories import make_content
from tests.helpers import api_client_for, kill_tree, make_user
from tests.live import ROOT, Daphne, subprocess_env
from tests.openai_stub import LONG_QA, LONG_SUMMARY, OpenAICompatibleServer
from tests.stream_clients import SSECollector, WSCollector, ticket, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TWENTY_SENTENCES = " ".join(
    f"The {animal} of the rocky shore {habit} during the {time} tide."
    for animal, habit, time in itertools.islice(
        itertools.product(
            ["anemone", "starfish", "crab", "limpet", "barnacle"],
            ["feeds", "hides", "rests", "moves"],
            ["low"],
        ),
        20,
    )
)


class BurstWorker:
    """`manage.py rqworker --burst` in its own process (the worker `make run` runs, in
    burst mode: it drains the queue, jobs enqueued meanwhile included, and exits)."""

    def __init__(self, **env: str) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "default", "--burst", "--worker-class", "core.worker.DjangoWorker"],
                cwd=ROOT, env=subprocess_env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait(self, timeout: float = 120) -> None:
        try:
            self.process.wait(timeout=timeout)
        finally:
            kill_tree(self.process.pid)
            self.process.wait()
        assert self.process.returncode == 0, self.log_path.read_text()[-3000:]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def daphne():
    server = Daphne()
    yield server
    server.close()


class Channel:
    """A channel, its owner's API client, and stream clients on the daphne."""

    def __init__(self, daphne: Daphne) -> None:
        self.owner = make_user()
        self.channel = channel_create(owner=self.owner, name="partials")
        _, self.token = AuthToken.objects.create(user=self.owner)
        self.api = api_client_for(self.owner)
        self.daphne = daphne

    def sse(self, last_event_id: int | None = None) -> SSECollector:
        headers = {"Authorization": f"Bearer {self.token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        return SSECollector(self.daphne.url(f"/api/contents/{self.channel.id}/events"), headers=headers)

    def ws(self, since: int | None = None) -> WSCollector:
        subscribe: dict[str, Any] = {"type": "subscribe", "channel_id": str(self.channel.id)}
        if since is not None:
            subscribe["since"] = since
        return WSCollector(
            self.daphne.ws_url(f"/api/contents/{self.channel.id}/ws?ticket={ticket(self.api)}"),
            origin=self.daphne.origin, subscribe=subscribe,
        )

    def submit(self, **fields: str) -> str:
        response = self.api.post("/api/contents", {"channel_id": str(self.channel.id), **fields}, format="json")
        assert response.status_code == 201, response.content
        return str(response.json()["id"])

    def stored(self, after: int = 0) -> list[dict[str, Any]]:
        """The stream's events as stored (the outbox), after `after`, as a client reads them."""
        return [
            {"id": e.seq, "type": e.type, **e.payload}
            for e in Event.objects.filter(stream=f"channel:{self.channel.id}", seq__gt=after).order_by("seq")
        ]


def result(row: Content) -> dict[str, Any]:
    """The content's AI result (a test that reads it has seen it written)."""
    assert row.ai_gen_metadata is not None
    return row.ai_gen_metadata


def completed(client: SSECollector | WSCollector) -> bool:
    return "processing_complete" in [e["type"] for e in client.events]


def reached(client: SSECollector | WSCollector, event_id: int) -> bool:
    return client.ids[-1:] == [event_id]


def summarizing_partials(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e for e in events
        if e["type"] == "content_status_update" and e["processing_status"] == "summarizing" and e.get("ai_gen_metadata")
    ]


def assert_grows_until_complete(events: list[dict[str, Any]], *, final_summary: str) -> None:
    """What a client watching a generation must see: at least 5 partial summaries before
    `processing_complete`, each a prefix of the next, the version strictly rising, the
    progress never falling and moving inside `summarizing`, the final summary complete."""
    types = [e["type"] for e in events]
    assert types.count("processing_complete") == 1, types
    done = types.index("processing_complete")
    partials = summarizing_partials(events[:done])
    assert len(partials) >= 5, [(e["type"], e["processing_status"], e.get("ai_gen_metadata")) for e in events]
    summaries = [e["ai_gen_metadata"]["summary"] for e in events if e.get("ai_gen_metadata")]
    for earlier, later in itertools.pairwise(summaries):
        assert later.startswith(earlier), (earlier, later)
    assert len({e["ai_gen_metadata"]["summary"] for e in partials}) == len(partials), "each partial adds a sentence"
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions)), versions
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), progress
    assert any(30 < e["progress"] < 65 for e in partials), [e["progress"] for e in partials]
    assert events[done]["ai_gen_metadata"]["summary"] == final_summary


def test_a_streamed_summary_grows_on_sse_and_websocket_before_the_content_completes(daphne):
    ai = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.1)  # 40 chunks over 4 s
    world = Channel(daphne)
    sse, ws = world.sse(), world.ws()
    try:
        content_id = world.submit(title="Tide pools", description="Tide pools hold water. Starfish live there.")
        worker = BurstWorker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"))
        worker.wait()

        row = Content.objects.get(id=content_id)
        assert row.status == "complete", worker.output()[-3000:]
        assert result(row)["summary"] == LONG_SUMMARY
        assert ai.bodies[0]["body"]["stream"] is True
        stored = [e for e in world.stored() if e["content_id"] == content_id]
        assert row.version == len(stored), "every partial write raises the version by one, with one event"
        for client in (sse, ws):
            assert wait_for(functools.partial(completed, client), timeout=30), client.ended
            events = [e for e in client.events if e["content_id"] == content_id]
            assert_grows_until_complete(events, final_summary=result(row)["summary"])
            assert events == stored, "the clients see exactly the outbox"
    finally:
        sse.close()
        ws.close()
        ai.close()


def test_a_fenced_out_run_cannot_write_a_partial():
    content = make_content()
    Content.objects.filter(id=content.id).update(status="generating", processing_status="summarizing", job_id="old-run")
    old_runner = Content.objects.get(id=content.id)
    writer = PartialWriter(old_runner, expected=100.0, interval=0)
    writer.offer(10, {"ai_gen_metadata": {"summary": "Written by the old run.", "qa_list": []}})
    before = Event.objects.count()

    later = timezone.now() + timedelta(seconds=settings.CONTENT_STALL_SECONDS + 1)
    assert lifecycle.sweep_stalled(CONTENT, now=later) == {"retried": 1, "failed": 0}

    with pytest.raises(Fenced):
        writer.offer(40, {"ai_gen_metadata": {"summary": "Written by the old run. Late.", "qa_list": []}})
    row = Content.objects.get(id=content.id)
    assert row.ai_gen_metadata == {"summary": "Written by the old run.", "qa_list": []}
    assert row.version == old_runner.version, "the refused write raised nothing"
    assert Event.objects.count() == before, "and published nothing"


def test_the_embedded_providers_summary_grows_sentence_by_sentence(daphne):
    # The embedded provider ranks the text first, then hands out its sentences within
    # microseconds of each other: the coalescing (AI_PARTIAL_INTERVAL, 0.25 s) would
    # rightly keep only the first, so this test sets it to 0 to see each sentence.
    world = Channel(daphne)
    sse, ws = world.sse(), world.ws()
    try:
        content_id = world.submit(title="The shore", description=TWENTY_SENTENCES)
        worker = BurstWorker(AI_PROVIDER="embedded", AI_SUMMARY_SENTENCES="8", AI_PARTIAL_INTERVAL="0")
        worker.wait()

        row = Content.objects.get(id=content_id)
        assert row.status == "complete", worker.output()[-3000:]
        stored = [e for e in world.stored() if e["content_id"] == content_id]
        qa_partials = [e for e in stored if e["processing_status"] == "qa_generating" and e.get("ai_gen_metadata")]
        # The stage's entry carries the whole summary and no pair yet; then one pair more each time.
        assert [len(e["ai_gen_metadata"]["qa_list"]) for e in qa_partials] == list(range(len(result(row)["qa_list"]) + 1))
        for client in (sse, ws):
            assert wait_for(functools.partial(completed, client), timeout=30), client.ended
            events = [e for e in client.events if e["content_id"] == content_id]
            assert_grows_until_complete(events, final_summary=result(row)["summary"])
            assert len(summarizing_partials(events)) == 8, "one per sentence"
            assert events == stored
    finally:
        sse.close()
        ws.close()


def test_a_client_that_reconnects_mid_stream_gets_exactly_the_partials_it_missed(daphne):
    ai = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.1, hold_at=8)
    world = Channel(daphne)
    sse, ws = world.sse(), world.ws()
    worker = None
    try:
        content_id = world.submit(title="Tide pools", description="Tide pools hold water. Starfish live there.")
        worker = BurstWorker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"))
        assert ai.held.wait(60), "the stream reached its hold"
        # Both clients have what the outbox has so far (a partial among it), then leave.
        assert wait_for(lambda: bool(summarizing_partials(world.stored())), timeout=30)
        head = world.stored()[-1]["id"]
        assert wait_for(lambda: sse.ids[-1:] == [head] and ws.ids[-1:] == [head], timeout=30), (sse.ids, ws.ids, head)
        # A late subscriber's snapshot shows the latest partial, at its version.
        snapshot = world.api.get(f"/api/contents/{content_id}").json()
        latest = world.stored()[-1]
        assert (snapshot["ai_gen_metadata"], snapshot["version"]) == (latest["ai_gen_metadata"], latest["version"])
        sse.close()
        ws.close()
        seen = {"sse": list(sse.events), "ws": list(ws.events)}

        ai.release.set()
        # Partials the clients miss while away; they come back while the stream goes on.
        assert wait_for(lambda: len(summarizing_partials(world.stored(after=head))) >= 2, timeout=30)
        sse, ws = world.sse(last_event_id=head), world.ws(since=head)
        worker.wait()

        missed = world.stored(after=head)
        assert len(summarizing_partials(missed)) >= 2 and missed[-1]["type"] == "processing_complete"
        for client in (sse, ws):
            assert wait_for(functools.partial(reached, client, missed[-1]["id"]), timeout=30), (client.ids, client.ended)
            assert client.events == missed, "exactly what was missed, in order, none twice"
        events = [e for e in seen["sse"] + sse.events if e["content_id"] == content_id]
        assert_grows_until_complete(events, final_summary=result(Content.objects.get(id=content_id))["summary"])
    finally:
        ai.release.set()
        if worker is not None and worker.process.poll() is None:
            kill_tree(worker.process.pid)
        sse.close()
        ws.close()
        ai.close()


def after_stall() -> Any:
    return timezone.now() + timedelta(seconds=settings.CONTENT_STALL_SECONDS + 1)


def run_numbered(run: int) -> str:
    """The stub's summary for its `run`-th summary request: the runs tell themselves apart."""
    return f"Run {run} begins here. " + LONG_SUMMARY


def partial_summaries(events: list[dict[str, Any]]) -> list[str]:
    return [e["ai_gen_metadata"]["summary"] for e in events if e.get("ai_gen_metadata")]


def test_a_run_handed_to_another_mid_stream_writes_nothing_more_and_the_new_run_starts_clean():
    ai = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.05, hold_at=10, summary=run_numbered)
    content = make_content(title="Tide pools", description="Tide pools hold water. Starfish live there.")
    stream = f"channel:{content.channel_id}"
    worker = BurstWorker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"))
    try:
        assert ai.held.wait(60), worker.output()[-3000:]
        assert wait_for(lambda: bool(Content.objects.get(id=content.id).ai_gen_metadata), timeout=30), "a partial of run 1"
        assert lifecycle.sweep_stalled(CONTENT, now=after_stall()) == {"retried": 1, "failed": 0}
        handed_over = Event.objects.filter(stream=stream).latest("seq")
        ai.release.set()
        worker.wait()

        row = Content.objects.get(id=content.id)
        assert (row.status, row.attempts) == ("complete", 2), worker.output()[-3000:]
        assert result(row)["summary"] == run_numbered(2)
        after = [e.payload for e in Event.objects.filter(stream=stream, seq__gt=handed_over.seq).order_by("seq")]
        # The new run's first write replaces what the dead one left, at a higher version.
        assert (after[0]["processing_status"], after[0]["ai_gen_metadata"], after[0]["progress"]) == (
            "summarizing", {"summary": "", "qa_list": []}, 30,
        )
        assert after[0]["version"] == handed_over.payload["version"] + 1
        assert not any(s.startswith("Run 1") for s in partial_summaries(after)), "nothing of run 1 after the hand-over"
        assert len([s for s in partial_summaries(after) if s.startswith("Run 2")]) >= 3
        assert "handed to another run" in worker.output()
    finally:
        ai.release.set()
        kill_tree(worker.process.pid)
        ai.close()


def test_a_regenerate_mid_stream_resets_the_summary_and_the_old_runs_partials_never_follow(client_for):
    # A content can be regenerated once it is complete or failed (the contract): here the
    # sweep gives a run up mid-stream (its last attempt), and its provider regenerates it
    # while the old run's model is still writing.
    ai = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.05, hold_at=10, summary=run_numbered)
    content = make_content(title="Tide pools", description="Tide pools hold water. Starfish live there.")
    stream = f"channel:{content.channel_id}"
    worker = BurstWorker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"))
    try:
        assert ai.held.wait(60), worker.output()[-3000:]
        assert wait_for(lambda: bool(Content.objects.get(id=content.id).ai_gen_metadata), timeout=30), "a partial of run 1"
        Content.objects.filter(id=content.id).update(attempts=settings.CONTENT_MAX_ATTEMPTS)
        assert lifecycle.sweep_stalled(CONTENT, now=after_stall()) == {"retried": 0, "failed": 1}
        failed = Content.objects.get(id=content.id)
        assert result(failed)["summary"].startswith("Run 1"), "what the user saw stays with the error"

        regenerated = client_for(content.provider).post(f"/api/contents/{content.id}/regenerate")
        assert regenerated.status_code == 202
        assert regenerated.json()["ai_gen_metadata"] is None
        reset = Event.objects.filter(stream=stream).latest("seq")
        assert (reset.payload["processing_status"], reset.payload["version"]) == ("uploading", failed.version + 1)
        ai.release.set()
        worker.wait()

        row = Content.objects.get(id=content.id)
        assert row.status == "complete", worker.output()[-3000:]
        assert result(row)["summary"] == run_numbered(2)
        after = [e.payload for e in Event.objects.filter(stream=stream, seq__gt=reset.seq).order_by("seq")]
        assert not any(s.startswith("Run 1") for s in partial_summaries(after)), "no partial of the old run after it"
        assert all(e["version"] > reset.payload["version"] for e in after)
        assert len(summarizing_partials([{"type": "content_status_update", **e} for e in after])) >= 3
    finally:
        ai.release.set()
        kill_tree(worker.process.pid)
        ai.close()


def test_an_error_mid_stream_keeps_the_partial_until_the_content_fails_with_its_message():
    ai = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.05, fail_at=20)
    content = make_content(title="Tide pools", description="Tide pools hold water. Starfish live there.")
    worker = BurstWorker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"))
    worker.wait()

    row = Content.objects.get(id=content.id)
    assert (row.status, row.processing_status) == ("error", "failed")
    assert row.error_message == "The AI provider's answer stopped before it was finished."
    events = [{"type": e.type, **e.payload} for e in Event.objects.filter(stream=f"channel:{content.channel_id}").order_by("seq")]
    assert events[-1]["type"] == "processing_error" and "ai_gen_metadata" not in events[-1]
    partials = summarizing_partials(events)
    assert partials, "the user saw a partial summary"
    # The merge {...content, ...data} keeps the last partial beside the error; so does the row.
    assert row.ai_gen_metadata == partials[-1]["ai_gen_metadata"]
    assert LONG_SUMMARY.startswith(result(row)["summary"])


def test_a_long_streamed_summary_costs_rows_and_events_bounded_by_the_coalescing():
    # About 2,000 tokens: 100 sentences of ~80 characters, in 400 chunks over 2 s.
    long_summary = " ".join(f"Sentence number {n} of a long summary says one more thing about tide pools." for n in range(100))
    ai = OpenAICompatibleServer(stream=True, chunks=400, chunk_delay=0.005, summary=long_summary)
    content = make_content(title="Long", description="Tide pools hold water. Starfish live there.")
    worker = BurstWorker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"))
    worker.wait()

    row = Content.objects.get(id=content.id)
    assert row.status == "complete" and result(row)["summary"] == long_summary
    events = [{"type": e.type, **e.payload} for e in Event.objects.filter(stream=f"channel:{content.channel_id}").order_by("seq")]
    partials = summarizing_partials(events)
    started, ended = ai.stream_times[0]
    # At most one write per AI_PARTIAL_INTERVAL while the summary streamed (the first at
    # once), against 100 sentence boundaries.
    bound = int((ended - started) / settings.AI_PARTIAL_INTERVAL) + 2
    assert 2 <= len(partials) <= bound < 50, (len(partials), bound)
    assert all(e["ai_gen_metadata"]["summary"].endswith(".") for e in partials), "written at sentence boundaries only"
    # One row update and one event per write: the version counts them all.
    assert row.version == len(events) == 4 + len([e for e in events if e["type"] == "content_status_update"]) - 3
    # What the stages produced is recorded: the next run's progress is measured against it.
    produced = dict(StageRun.objects.filter(content_id=content.id).values_list("stage", "produced"))
    assert produced == {"uploading": None, "summarizing": len(long_summary), "qa_generating": len(LONG_QA)}
    forget_stage_averages()
    assert expected_output("summarizing") == len(long_summary)


PAGE = (
    b"<!doctype html><html><head><title>Tide pools</title></head><body><article><p>"
    + b"A tide pool is a rocky pool on the shore that the sea fills at high tide. " * 40
    + b"</p></article><!-- " + b"x" * 200_000 + b" --></body></html>"
)


def slow_page(*, length: bool):
    """The page in 20 pieces 0.1 s apart, with or without a Content-Length."""

    def answer(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        if length:
            handler.send_header("Content-Length", str(len(PAGE)))
        handler.end_headers()
        size = -(-len(PAGE) // 20)
        for start in range(0, len(PAGE), size):
            handler.wfile.write(PAGE[start:start + size])
            handler.wfile.flush()
            time.sleep(0.1)

    return answer


def test_fetching_a_link_moves_the_progress_by_the_bytes_read_against_its_content_length(http_server):
    http_server.routes["/sized"] = slow_page(length=True)
    http_server.routes["/unsized"] = slow_page(length=False)
    sized = make_content(url=http_server.url("/sized"), title="", description="")
    unsized = make_content(channel=sized.channel, url=http_server.url("/unsized"), title="", description="")
    worker = BurstWorker(FETCH_ALLOW_LOOPBACK="1")
    worker.wait()

    def uploading_progress(content: Content) -> list[int]:
        return [
            e.payload["progress"] for e in Event.objects.filter(stream=f"channel:{content.channel_id}").order_by("seq")
            if e.payload["content_id"] == str(content.id) and e.payload["processing_status"] == "uploading"
        ]

    for content in (sized, unsized):
        assert Content.objects.get(id=content.id).status == "complete", worker.output()[-3000:]
    moving = uploading_progress(sized)
    assert moving[0] == 0 and len(moving) >= 4, moving
    assert moving == sorted(set(moving)) and moving[-1] < 30, moving
    assert uploading_progress(unsized) == [0], "no length, no share of it to show"


def test_the_openai_provider_streams_the_summary_growing_and_the_pairs_one_by_one():
    ai = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0)
    try:
        provider = OpenAICompatibleProvider(base_url=ai.url("/v1"), api_key="sk-test", model="tiny", timeout=5)
        summaries = list(provider.stream_summary("Tide pools hold water.", title="Pools"))
        pairs = list(provider.stream_qa("Tide pools hold water.", summary=summaries[-1], count=3))
    finally:
        ai.close()
    assert ai.bodies[0]["body"]["stream"] is True
    assert len(summaries) >= 20 and summaries[-1] == LONG_SUMMARY
    assert all(later.startswith(earlier) and later != earlier for earlier, later in itertools.pairwise(summaries))
    assert [len(p) for p in pairs] == [1, 2, 3] and pairs[-1] == LONG_QA


def test_progress_rises_inside_a_stage_never_reaching_the_next_one():
    steps = [progress_within("summarizing", produced, 400) for produced in range(0, 4000, 10)]
    assert steps[0] == 30 and steps == sorted(steps) and 60 <= max(steps) < 65
    assert progress_within("uploading", 50_000, 100_000) == 14
    assert progress_within("qa_generating", 3, 3) == 95, "the average reached: 91 % of the way, slowing"


def test_the_estimated_completion_follows_the_rate_the_run_produces_at():
    content = make_content()
    StageRun.objects.create(content=content, stage="qa_generating", seconds=10.0, produced=3)
    forget_stage_averages()
    now = timezone.now()
    # 100 of 400 characters in 2 s: 6 s more here, then the 10 s questions usually take.
    assert refine_completion("summarizing", produced=100, expected=400, elapsed=2, now=now) == now + timedelta(seconds=16)
    assert refine_completion("summarizing", produced=0, expected=400, elapsed=2, now=now) is None
