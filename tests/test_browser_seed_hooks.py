"""The seed's own client code, in real headless Chromium, against a running server."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from contents.services import channel_create, content_submit
from tests.conftest import make_user
from tests.live import Daphne, run_burst_worker_process

pytestmark = pytest.mark.django_db(transaction=True)
SEED_HOOKS = (Path(__file__).parent / "browser" / "seed_content_hooks.js").read_text()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread; the test's own
    # ORM calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("console", lambda message: print("browser:", message.text))
        yield page
        browser.close()


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
            await new Promise((resolve) => { eventSource.onopen = resolve; });
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
    assert ws_types == ["subscribed", "content_status_update", "content_status_update", "processing_complete"]
