"""The seed's own client code, in real headless Chromium, against a running server."""

import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from contents.services import channel_create, content_submit
from tests.chromium import SEED_BATCH_CLIENTS, SEED_HOOKS, console_of, in_own_thread
from tests.helpers import make_user
from tests.live import ROOT, Daphne, run_burst_worker_process, subprocess_env
from tests.media import make_video
from tests.openai_stub import LONG_SUMMARY, OpenAICompatibleServer
from videos.services import video_like, video_upload, video_view

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    daphne = Daphne()
    yield daphne
    daphne.stop()


@pytest.fixture
def submitted():
    """Created before the browser starts: Playwright keeps an event loop in this thread."""
    owner = make_user("owner")
    channel = channel_create(owner=owner, name="seed")
    content = content_submit(
        channel=channel, provider=owner, title="Tides",
        description="Tide pools hold sea water at low tide. Starfish and anemones live in them. Crabs hide under rocks.",
    )
    return channel, content


def test_the_seeds_sse_and_websocket_hooks_see_a_content_complete(submitted, server, browser_page):
    channel, content = submitted
    page = browser_page

    page.goto(server.url("/accounts/login/"))
    page.fill("input[name=username]", "owner")
    page.fill("input[name=password]", "pw-owner")
    page.click("button[type=submit]")
    page.wait_for_url("**/api/docs/")

    page.add_script_tag(content=SEED_HOOKS)
    page.evaluate(
        """async ({channelId, spoofedUserId}) => {
            // The list the page rendered before subscribing, fetched as the generated client does.
            const fetchList = async (id) => (await fetch(`/contents/channel/${id}`)).json();
            currentUserId = spoofedUserId;

            window.sseCache = createQueryClient(fetchList);
            currentQueryClient = window.sseCache;
            sseCache.setQueryData(queryKeys.contents.byChannel(channelId), await fetchList(channelId));
            const { eventSource } = useContentEvents(channelId);

            window.wsCache = createQueryClient(fetchList);
            currentQueryClient = window.wsCache;
            wsCache.setQueryData(queryKeys.contents.byChannel(channelId), await fetchList(channelId));
            const { socket } = useContentWebSocket(channelId);

            window.wsMessages = [];
            socket.addEventListener('message', (event) => wsMessages.push(JSON.parse(event.data)));
            if (eventSource.readyState !== EventSource.OPEN) {
                await new Promise((resolve) => eventSource.addEventListener('open', resolve, { once: true }));
            }
        }""",
        {"channelId": str(channel.id), "spoofedUserId": "00000000-0000-0000-0000-000000000000"},
    )
    page.wait_for_function("wsMessages.some((m) => m.type === 'subscribed')")
    # The stream's position is fixed just after its headers; give it a moment before events start.
    page.wait_for_timeout(500)

    run_burst_worker_process()

    key = f'JSON.stringify(queryKeys.contents.byChannel("{channel.id}"))'
    page.wait_for_function(f"sseCache.data.get({key}).contents[0].status === 'complete'", timeout=20000)
    page.wait_for_function(f"wsCache.data.get({key}).contents[0].status === 'complete'", timeout=20000)
    sse_content = page.evaluate(f"sseCache.data.get({key}).contents[0]")
    ws_content = page.evaluate(f"wsCache.data.get({key}).contents[0]")
    ws_types = page.evaluate("wsMessages.map((m) => m.type)")

    assert sse_content["id"] == str(content.id)
    assert (sse_content["status"], sse_content["processing_status"], sse_content["progress"]) == ("complete", "completed", 100)
    assert sse_content["ai_gen_metadata"]["summary"]
    assert sse_content["type"] == "processing_complete", "the merged event carried its type beside the fields"
    assert (ws_content["status"], ws_content["processing_status"]) == ("complete", "completed")
    assert ws_content["ai_gen_metadata"]["qa_list"], "refetched after processing_complete"
    # Entering summarizing and qa_generating, and any partial result the stages wrote between.
    assert ws_types[0] == "subscribed" and ws_types[-1] == "processing_complete", ws_types
    assert set(ws_types[1:-1]) == {"content_status_update"} and len(ws_types) >= 4, ws_types


@pytest.fixture
def streaming_ai() -> Iterator[OpenAICompatibleServer]:
    """An OpenAI-compatible model that streams its summary in 40 chunks over 4 s."""
    server = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.1)
    yield server
    server.close()


def test_the_seeds_unchanged_sse_hook_shows_a_partial_summary_before_the_content_completes(
    submitted, server, streaming_ai, browser_page,
):
    channel, _ = submitted
    page = browser_page
    page.goto(server.url("/accounts/login/"))
    page.fill("input[name=username]", "owner")
    page.fill("input[name=password]", "pw-owner")
    page.click("button[type=submit]")
    page.wait_for_url("**/api/docs/")

    page.add_script_tag(content=SEED_HOOKS)
    page.evaluate(
        """async (channelId) => {
            const fetchList = async (id) => (await fetch(`/contents/channel/${id}`)).json();
            window.sseCache = createQueryClient(fetchList);
            currentQueryClient = window.sseCache;
            sseCache.setQueryData(queryKeys.contents.byChannel(channelId), await fetchList(channelId));
            // What a component rendering the cache would show after each of the hook's updates
            // (the harness's query client records; the hook itself is the seed's).
            window.shown = [];
            const setQueryData = sseCache.setQueryData;
            sseCache.setQueryData = (key, updater) => {
                setQueryData(key, updater);
                const c = sseCache.getQueryData(key).contents[0];
                shown.push({ status: c.status, stage: c.processing_status, version: c.version,
                             summary: c.ai_gen_metadata?.summary ?? null });
            };
            const { eventSource } = useContentEvents(channelId);
            if (eventSource.readyState !== EventSource.OPEN) {
                await new Promise((resolve) => eventSource.addEventListener('open', resolve, { once: true }));
            }
        }""",
        str(channel.id),
    )
    page.wait_for_timeout(500)  # as above: the stream's position is fixed just after its headers

    subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst", "--worker-class", "core.worker.DjangoWorker"],
        cwd=ROOT, env=subprocess_env(AI_PROVIDER="openai", AI_BASE_URL=streaming_ai.url("/v1"), AI_API_KEY="test"),
        check=True, capture_output=True, timeout=120,
    )
    page.wait_for_function("shown.length && shown.at(-1).status === 'complete'", timeout=20000)
    shown = page.evaluate("shown")
    final = shown[-1]["summary"]
    assert final == LONG_SUMMARY, shown[-1]
    partial = [s["summary"] for s in shown if s["stage"] == "summarizing" and s["summary"]]
    assert partial, f"no partial summary was shown before the content completed: {shown}"
    assert all(final.startswith(summary) for summary in partial), partial
    assert len(set(partial)) >= 2 and min(map(len, partial)) < len(final), f"the summary grew while generating: {partial}"
    assert [s["version"] for s in shown] == sorted({s["version"] for s in shown}), "each event a higher version"


@pytest.fixture
def studio():
    """A user with a video, made before the browser starts."""
    owner = make_user("studio")
    video = video_upload(owner=owner, file=SimpleUploadedFile("clip.mp4", make_video(seconds=1)), title="Clip")
    return owner, video


def test_the_seeds_job_monitor_and_metadata_updater_work_unchanged(studio, server, browser_page):
    owner, video = studio
    page = browser_page
    page.goto(server.url("/healthz"))
    page.add_script_tag(content=SEED_BATCH_CLIENTS)
    job_id = page.evaluate(
        """async ({username, password, videoId}) => {
            // What the studio and feed pages do around the seed's classes.
            const login = await fetch('/v1/auth/token', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                         body: JSON.stringify({username, password})});
            window.token = (await login.json()).token;
            const startAIJob = async () => (await fetch('/v1/ai/jobs', {
                method: 'POST', headers: {'Authorization': `Bearer ${token}`, 'Content-Type': 'application/json'},
                body: JSON.stringify({kind: 'glitch', video_id: videoId, params: {}})})).json();
            const loadFeed = async () => (await (await fetch('/v1/videos/feed')).json()).results;

            const monitor = new AIJobMonitor();
            const job = await startAIJob();
            monitor.addJob(job.job_id);

            const videos = await loadFeed();
            document.body.innerHTML = videos.map((v) =>
                `<div data-video-id="${v.id}"><span class="view-count">${v.view_count}</span>` +
                `<span class="like-count">${v.like_count}</span></div>`).join('');
            const updater = new VideoMetadataUpdater();
            updater.trackVideos(videos);
            return job.job_id;
        }""",
        {"username": "studio", "password": "pw-studio", "videoId": str(video.id)},
    )

    run_burst_worker_process()
    completed = f"Job {job_id} completed: "
    # The monitor polls every 2 s and reports through console.log, as the seed wrote it.
    for _ in range(80):
        if any(message.startswith(completed) for message in console_of(page)):
            break
        page.wait_for_timeout(250)
    result_line = next((m for m in console_of(page) if m.startswith(completed)), None)
    assert result_line is not None, console_of(page)
    assert result_line.endswith(".mp4")
    assert page.evaluate("(async (url) => (await fetch(url)).status)", result_line.removeprefix(completed)) == 200

    def react_to_the_video() -> None:
        for viewer in (make_user(), make_user(), make_user()):
            video_view(video_id=video.id, user=viewer)
        video_like(video=video, user=owner)

    in_own_thread(react_to_the_video)
    card = f'[data-video-id="{video.id}"]'
    page.wait_for_function(f"document.querySelector('{card} .view-count').textContent === '3'", timeout=15000)
    assert page.text_content(f"{card} .like-count") == "1"
