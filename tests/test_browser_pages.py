"""The pages in real headless Chromium (Debian's, driven by Playwright) against a real
daphne, a real RQ worker, PostgreSQL and Redis: a link's card goes from waiting to
complete without a reload; a daphne restart mid-pipeline costs no step and repeats
none; a blocked stream falls back to polling, says so, and goes back to live; a
glitch job's progress reaches 100 and its result plays; the bell rises and clears;
the pages, the admin and the API docs run under the site's Content-Security-Policy
without a violation.
The screenshots in docs/screenshots/ are written here (UPDATE_SCREENSHOTS=1)."""

import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from knox.models import AuthToken
from playwright.sync_api import (
    APIResponse,
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    Response,
    Route,
    sync_playwright,
)

from contents.services import channel_create
from notifications.models import Notification
from tests.chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    console_of,
    csp_violations,
    in_own_thread,
    record_console,
    record_csp_violations,
)
from tests.helpers import LocalHTTPServer, make_user
from tests.live import ROOT, Daphne, subprocess_env
from tests.media import make_video
from tests.openai_stub import OpenAICompatibleServer
from videos.services import video_upload

pytestmark = pytest.mark.django_db(transaction=True)
# The committed screenshots are rewritten only when asked (UPDATE_SCREENSHOTS=1 make test):
# each run draws new pixels (times, video frames), and a test run must not leave the
# work tree changed. Otherwise they go to a scratch folder, taken and checked alike.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "aistatus-screenshots"
)
ARTICLE = b"""<!doctype html><html><head><title>Tide pools</title>
<meta property="og:site_name" content="Shore notes"></head><body><article>
<p>Tide pools are rocky pools on the seashore that fill with sea water at high tide.</p>
<p>At low tide they stay behind, full of life: starfish, anemones, snails and small fish.</p>
<p>Crabs hide under the rocks, and seaweed gives shelter from the sun.</p>
</article></body></html>"""

# Every state a card was drawn in, as the person saw it: recorded in the page by a
# MutationObserver on the cards' data-version (set once per drawing).
RECORD_CARDS = """
window.__cards = [];
const record = (node) => {
  if (!(node instanceof HTMLElement) || !node.dataset.contentId) return;
  const last = window.__cards.filter((c) => c.id === node.dataset.contentId).pop();
  if (last && last.version === Number(node.dataset.version)) return;
  window.__cards.push({ id: node.dataset.contentId, version: Number(node.dataset.version),
                        status: node.dataset.status, stage: node.dataset.stage });
};
new MutationObserver((mutations) => {
  for (const m of mutations) {
    if (m.type === 'attributes') record(m.target);
    else for (const n of m.addedNodes) record(n);
  }
}).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-version'] });
"""
PIPELINE = ["uploading", "summarizing", "qa_generating", "completed"]


@pytest.fixture(scope="module", autouse=True)
def collected_static() -> None:
    """The test servers run with DEBUG off, serving static files from STATIC_ROOT as
    `make test` collects them; collected again here when the pages' files are newer."""
    source, target = ROOT / "web" / "static", Path(settings.STATIC_ROOT)
    stale = [
        path for path in source.rglob("*") if path.is_file()
        and (not (target / path.relative_to(source)).exists()
             or (target / path.relative_to(source)).stat().st_mtime < path.stat().st_mtime)
    ]
    if stale:
        call_command("collectstatic", interactive=False, verbosity=0)


class Worker:
    """An `rqworker default` process of the test's own, started and stopped by it."""

    def __init__(self, **env: str) -> None:
        self.env = env
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "default", "--worker-class", "core.worker.DjangoWorker"],
                cwd=ROOT, env=subprocess_env(**self.env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            from tests.helpers import kill_tree

            kill_tree(self.process.pid)
            self.process.wait()
        self.process = None
        self.log_path.unlink(missing_ok=True)


@pytest.fixture
def ai() -> Iterator[OpenAICompatibleServer]:
    """An OpenAI-compatible stub that takes a second per answer, so each stage is seen."""
    server = OpenAICompatibleServer(delay=1.0)
    yield server
    server.close()


@pytest.fixture
def site() -> Iterator[LocalHTTPServer]:
    """The page a submitted link points at, answered after a second (a real fetch)."""
    server = LocalHTTPServer()

    def article(handler) -> None:
        time.sleep(1.0)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(ARTICLE)))
        handler.end_headers()
        handler.wfile.write(ARTICLE)

    server.routes["/tide-pools"] = article
    yield server
    server.close()


@pytest.fixture
def worker(ai) -> Iterator[Worker]:
    # FETCH_ALLOW_LOOPBACK in the tests' worker only: the linked page is on 127.0.0.1.
    process = Worker(AI_PROVIDER="openai", AI_BASE_URL=ai.url("/v1"), AI_API_KEY="test", FETCH_ALLOW_LOOPBACK="1")
    yield process
    process.stop()


@pytest.fixture
def server() -> Iterator[Daphne]:
    daphne = Daphne()
    yield daphne
    daphne.close()


@pytest.fixture
def browser(monkeypatch) -> Iterator[Browser]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_page(browser: Browser, *, locale: str = "en-US") -> Page:
    context = browser.new_context(locale=locale, timezone_id="UTC", viewport={"width": 1100, "height": 860})
    page = context.new_page()
    record_console(page, with_types=True)
    record_csp_violations(page)
    return page


def assert_under_csp(response: Response | None) -> None:
    """The document came with the site's Content-Security-Policy (config/settings.py)."""
    assert response is not None
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy


def text_of(page: Page, selector: str) -> str:
    """The element's text content; an element without any fails the test here."""
    text = page.text_content(selector)
    assert text is not None, f"{selector} has no text content"
    return text


def log_in(page: Page, server: Daphne, username: str, then: str) -> None:
    page.goto(server.url(then))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_url(f"**{then}")


def wait(page: Page, condition: str, what: str, timeout: float = 30) -> None:
    """Until the JavaScript expression `condition` holds in the page (one that throws does
    not yet). Polled through page.evaluate rather than wait_for_function: Playwright builds
    that one's predicate from a string in the page, which the site's Content-Security-Policy
    refuses (no 'unsafe-eval'), and these pages run under it as served."""
    deadline = time.monotonic() + timeout
    check = f"() => {{ try {{ return Boolean({condition}); }} catch {{ return false; }} }}"
    while not page.evaluate(check):
        if time.monotonic() > deadline:
            state = page.evaluate("""() => ({
                cards: window.__cards, mode: document.querySelector('#channel-mode')?.dataset.mode,
                log: (window.aistatus?.channelLog ?? []).slice(-40) })""")
            raise AssertionError(f"timed out waiting for {what}: {state}; console {console_of(page)}")
        page.wait_for_timeout(50)


def card_history(page: Page, content_id: str) -> list[dict]:
    return [c for c in page.evaluate("window.__cards") if c["id"] == content_id]


def applied(page: Page, content_id: str) -> list[int]:
    """The versions of the content the kit applied, in order."""
    return page.evaluate(
        "(id) => window.aistatus.channelLog.filter((e) => e.kind === 'apply' && e.detail.id === id).map((e) => e.detail.version)",
        content_id,
    )


def assert_forward_only(history: list[dict]) -> None:
    """Versions strictly rise (no repeat, no step back), and so does the pipeline stage."""
    versions = [c["version"] for c in history]
    assert versions == sorted(set(versions)), history
    stages = [PIPELINE.index(c["stage"]) for c in history]
    assert stages == sorted(stages), history
    assert history[0]["status"] == "idle" and history[-1]["status"] == "complete", history


@pytest.fixture
def owner_with_channel():
    """Made before the browser starts (Playwright keeps an event loop in this thread)."""
    owner = make_user("owner")
    return owner, channel_create(owner=owner, name="Shore")


def submit_link(page: Page, url: str) -> str:
    """Submit a link on the channel page; the id of its card."""
    before = set(page.eval_on_selector_all("[data-content-id]", "els => els.map((e) => e.dataset.contentId)"))
    page.fill("#submit-form input[name=url]", url)
    page.click("#submit-form button[type=submit]")
    wait(page, f"document.querySelectorAll('[data-content-id]').length > {len(before)}", "the new card")
    ids = page.eval_on_selector_all("[data-content-id]", "els => els.map((e) => e.dataset.contentId)")
    (new,) = set(ids) - before
    return new


def test_a_submitted_link_goes_from_waiting_to_complete_live_and_the_bell_rises_and_clears(
    owner_with_channel, server, worker, site, browser,
):
    owner, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_CARDS)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "the live stream")
    assert page.text_content("#channel-mode") == "Live"
    assert page.get_attribute(".bell-count", "data-count") == "0"
    page.evaluate("window.__sameDocument = true")

    content_id = submit_link(page, site.url("/tide-pools"))
    card = f'[data-content-id="{content_id}"]'
    assert page.get_attribute(card, "data-status") == "idle"
    assert "Waiting" in text_of(page, f"{card} .badge")
    worker.start()
    wait(page, f"document.querySelector('{card}').dataset.status === 'generating'", "generating")
    assert "This content is still being generated." in text_of(page, card)
    # 30 on entering summarizing, 65 on qa_generating, and in between while a stage writes.
    assert 30 <= page.eval_on_selector(f"{card} progress", "p => p.value") < 100
    wait(page, f"document.querySelector('{card}').dataset.status === 'complete'", "complete")

    assert page.evaluate("window.__sameDocument") is True, "no reload"
    history = card_history(page, content_id)
    assert_forward_only(history)
    assert list(dict.fromkeys(c["stage"] for c in history)) == PIPELINE, "every stage was drawn, live"
    # One version a transition, and one more for each partial result a stage wrote.
    versions = applied(page, content_id)
    assert versions[0] == 1 and versions == sorted(set(versions)) and len(versions) >= 4, versions
    assert page.text_content(f"{card} .summary p") == "Tide pools are rocky pools full of life."
    assert page.text_content(f"{card} .qa dt") == "Where do tide pools form?"
    assert page.get_attribute(f"{card} .source", "href") == site.url("/tide-pools")

    # The bell: the content's result is a notification, pushed on the user's stream.
    wait(page, "document.querySelector('.bell-count').dataset.count === '1'", "the bell to ring")
    assert page.is_visible(".bell-count")
    page.click(".bell-button")
    assert page.text_content(".bell-list li.unread a") == "“Tide pools” is ready"
    page.click(".bell-mark-read")
    wait(page, "document.querySelector('.bell-count').dataset.count === '0'", "the bell to clear")
    assert not page.is_visible(".bell-count")
    assert page.locator(".bell-list li.unread").count() == 0

    unread: list[int] = []
    in_own_thread(lambda: unread.append(Notification.objects.filter(recipient=owner, is_read=False).count()))
    assert unread == [0]
    errors = [m for m in console_of(page) if m.startswith(("error", "pageerror"))]
    assert errors == []


def test_a_daphne_restart_mid_pipeline_costs_the_card_no_step_and_repeats_none(
    owner_with_channel, server, worker, site, browser,
):
    _, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_CARDS)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "the live stream")

    content_id = submit_link(page, site.url("/tide-pools"))
    card = f'[data-content-id="{content_id}"]'
    worker.start()
    wait(page, f"document.querySelector('{card}').dataset.stage === 'summarizing'", "summarizing")

    # daphne stops while the worker goes on: the stages it commits meanwhile reach the
    # page when the kit reopens the stream from its last event id.
    assert page.get_attribute(card, "data-status") == "generating"
    server.restart(down_for=1.0)
    wait(page, f"document.querySelector('{card}').dataset.status === 'complete'", "complete after the restart", timeout=40)
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "live again")

    history = card_history(page, content_id)
    assert_forward_only(history)
    assert applied(page, content_id) == sorted(set(applied(page, content_id))), "the kit applied no version twice"
    log = page.evaluate("window.aistatus.channelLog")
    modes = [e["detail"]["mode"] for e in log if e["kind"] == "mode"]
    assert "reconnecting" in modes and modes[-1] == "live", modes
    events = [e["detail"]["id"] for e in log if e["kind"] == "event"]
    assert events == sorted(set(events)), "each event id once, in order"
    # The stream reopened where the page was: from the last event it had before daphne stopped.
    first_close = next(i for i, e in enumerate(log) if e["kind"] == "close")
    seen_before = max(e["detail"]["id"] for e in log[:first_close] if e["kind"] == "event")
    reopened_from = [e["detail"]["from"] for e in log[first_close:] if e["kind"] == "open"]
    assert reopened_from and reopened_from[0] >= seen_before, (seen_before, reopened_from)
    assert page.text_content(f"{card} .summary p") == "Tide pools are rocky pools full of life."


# Every (title, source) a card was drawn with, in order: recorded in the page by a
# MutationObserver, so that a title shown for a moment is seen too.
RECORD_TITLES = """
window.__titles = [];
new MutationObserver(() => {
  for (const card of document.querySelectorAll('[data-content-id]')) {
    const drawn = { id: card.dataset.contentId, title: card.querySelector('.card-title')?.textContent ?? null,
                    source: card.querySelector('.source')?.textContent ?? null };
    const last = window.__titles.filter((t) => t.id === drawn.id).pop();
    if (!last || last.title !== drawn.title || last.source !== drawn.source) window.__titles.push(drawn);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def titles_drawn(page: Page, content_id: str) -> list[tuple[str, str]]:
    return [(t["title"], t["source"]) for t in page.evaluate("window.__titles") if t["id"] == content_id]


def logged(page: Page, kind: str, content_id: str) -> str:
    """A condition for wait(): the kit logged `kind` (apply, fill...) for the content."""
    return f"window.aistatus.channelLog.some((e) => e.kind === '{kind}' && e.detail.id === '{content_id}')"


def test_a_content_first_known_from_a_stream_event_is_drawn_with_its_title_and_link(owner_with_channel, server, browser):
    """Submitted elsewhere (another tab, another member): the page learns of it from the
    event, which has no title or link, and fetches its detail. No worker runs, so the
    content stays at its first version: nothing but the detail can draw its title."""
    from contents.services import content_submit

    owner, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_TITLES)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "the live stream")

    submitted: list[str] = []
    in_own_thread(lambda: submitted.append(str(content_submit(channel=channel, provider=owner, url="https://example.com/tide-pools").id)))
    (content_id,) = submitted
    wait(page, logged(page, "apply", content_id), "the event applied")
    wait(page, logged(page, "fill", content_id), "the detail merged")
    card = f'[data-content-id="{content_id}"]'
    assert page.get_attribute(card, "data-version") == "1", "still the event's version: the detail came at the same one"
    assert titles_drawn(page, content_id) == [("https://example.com/tide-pools", "example.com")], "never 'Untitled' or 'Text'"


def test_the_users_own_title_is_never_drawn_untitled_when_the_event_beats_the_forms_answer(owner_with_channel, server, browser):
    """The form's POST answer is held back (Playwright) until the page has the content's
    event: the title comes from the content's detail, fetched at once. Then the same with
    the detail failing too: the card drawn from the event takes the title when the form's
    answer arrives, at the same version."""
    _, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_TITLES)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "the live stream")
    held: list[tuple[Route, APIResponse]] = []

    def hold(route: Route) -> None:
        if route.request.method == "POST":
            held.append((route, route.fetch()))
        else:
            route.continue_()

    page.route("**/api/contents", hold)

    def submit_text(title: str) -> tuple[str, Route, APIResponse]:
        page.fill("#submit-form input[name=title]", title)
        page.fill("#submit-form textarea[name=description]", "Tide pools hold sea water at low tide. Crabs hide in them.")
        page.click("#submit-form button[type=submit]")
        deadline = time.monotonic() + 30
        while not held:  # the route handler runs while Playwright waits
            assert time.monotonic() < deadline, "the form's request never came"
            page.wait_for_timeout(50)
        ((route, response),) = held
        held.clear()
        content_id = str(response.json()["id"])
        wait(page, logged(page, "apply", content_id), "the event, before the form's answer")
        return content_id, route, response

    # The detail fetched on the event describes the card before it is drawn.
    content_id, route, response = submit_text("Tides")
    wait(page, logged(page, "fill", content_id), "the detail merged")
    route.fulfill(response=response)
    wait(page, "!document.querySelector('#submit-form button[type=submit]').disabled", "the form's answer")
    assert page.input_value("#submit-form input[name=title]") == "", "the form was answered and reset"
    assert titles_drawn(page, content_id) == [("Tides", "Text")]

    # The detail cannot be fetched: the card is drawn from the event, and redrawn with the
    # title the form's answer carries, although its version is the same.
    detail = re.compile(r".*/api/contents/[0-9a-f-]{36}$")
    page.route(detail, lambda route: route.abort() if route.request.method == "GET" else route.continue_())
    content_id, route, response = submit_text("Glaciers")
    wait(page, f"document.querySelector('[data-content-id=\"{content_id}\"]') !== null", "the card drawn from the event")
    route.fulfill(response=response)
    wait(page, logged(page, "fill", content_id), "the form's answer merged")
    assert page.get_attribute(f'[data-content-id="{content_id}"]', "data-version") == "1"
    assert titles_drawn(page, content_id)[-1] == ("Glaciers", "Text"), titles_drawn(page, content_id)


# Every state a card showed, as the person saw it: its status, stage, progress bar, the
# summary's text and the number of Q&A pairs, recorded at each change of any of them.
RECORD_RESULTS = """
window.__shown = [];
new MutationObserver(() => {
  for (const card of document.querySelectorAll('[data-content-id]')) {
    const shown = { id: card.dataset.contentId, status: card.dataset.status, stage: card.dataset.stage,
                    progress: card.querySelector('progress')?.value ?? null,
                    summary: card.querySelector('.summary p')?.textContent ?? null,
                    pairs: card.querySelectorAll('.qa dt').length,
                    error: card.querySelector('.error-message')?.textContent ?? null,
                    busy: card.getAttribute('aria-busy') };
    const last = window.__shown.filter((s) => s.id === shown.id).pop();
    if (!last || Object.keys(shown).some((key) => last[key] !== shown[key])) window.__shown.push(shown);
  }
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
"""


def shown_states(page: Page, content_id: str) -> list[dict]:
    return [s for s in page.evaluate("window.__shown") if s["id"] == content_id]


def submit_text(page: Page, title: str, text: str) -> str:
    page.fill("#submit-form input[name=title]", title)
    page.fill("#submit-form textarea[name=description]", text)
    return submit_link(page, "")


TIDE_TEXT = "Tide pools hold sea water at low tide. Starfish and anemones live in them. Crabs hide under rocks."


@pytest.fixture
def streaming_ai() -> Iterator[OpenAICompatibleServer]:
    """An OpenAI-compatible model that streams: the summary in 40 chunks over 4 s."""
    server = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.1)
    yield server
    server.close()


@pytest.fixture
def streaming_worker(streaming_ai) -> Iterator[Worker]:
    process = Worker(AI_PROVIDER="openai", AI_BASE_URL=streaming_ai.url("/v1"), AI_API_KEY="test")
    yield process
    process.stop()


def test_the_channel_page_shows_the_summary_growing_the_pairs_appearing_and_progress_moving_inside_a_stage(
    owner_with_channel, server, streaming_worker, browser,
):
    _, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_RESULTS)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "the live stream")
    content_id = submit_text(page, "Tides", TIDE_TEXT)
    streaming_worker.start()
    card = f'[data-content-id="{content_id}"]'
    wait(page, f"document.querySelector('{card}').dataset.status === 'complete'", "complete", timeout=60)

    states = shown_states(page, content_id)
    final = text_of(page, f"{card} .summary p")
    assert final.startswith("Sentence 1 tells how the anemones") and final.endswith("refill the pools twice a day."), final
    # The summary grew on the page while the model wrote it, each text a prefix of the next.
    growing = list(dict.fromkeys(s["summary"] for s in states if s["status"] == "generating" and s["summary"]))
    assert len({len(text) for text in growing}) >= 3, growing
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(growing)), growing
    assert final.startswith(growing[-1])
    # The progress bar moved inside summarizing (not only from stage to stage), never back.
    summarizing = [s["progress"] for s in states if s["stage"] == "summarizing"]
    assert len({p for p in summarizing if 30 < p < 65}) >= 2, summarizing
    progress = [s["progress"] for s in states if s["progress"] is not None]
    assert progress == sorted(progress), progress
    # The Q&A pairs appeared before the content was complete.
    assert any(s["stage"] == "qa_generating" and s["pairs"] >= 1 for s in states), states
    assert page.locator(f"{card} .qa dt").count() == 3
    # The live region announces the result once, complete, not at every partial.
    assert {s["busy"] for s in states if s["status"] == "generating"} == {"true"}, states
    assert page.get_attribute(card, "aria-busy") == "false"
    errors = [m for m in console_of(page) if m.startswith(("error", "pageerror"))]
    assert errors == []


@pytest.fixture
def slow_streaming_worker() -> Iterator[Worker]:
    """A model streaming its summary over 10 s: several of the 2 s polls fall inside it."""
    server = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.25)
    process = Worker(AI_PROVIDER="openai", AI_BASE_URL=server.url("/v1"), AI_API_KEY="test")
    yield process
    process.stop()
    server.close()


def test_while_polling_the_channel_page_shows_the_partial_summary(owner_with_channel, server, slow_streaming_worker, browser):
    """The stream blocked, the page polls: the batch status rows carry no result, so the
    kit fetches the detail of a generating content whose version moved."""
    _, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_RESULTS)
    page.route(f"**/api/contents/{channel.id}/events*", lambda route: route.abort())
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'polling'", "polling", timeout=20)
    content_id = submit_text(page, "Tides", TIDE_TEXT)
    slow_streaming_worker.start()
    card = f'[data-content-id="{content_id}"]'
    wait(page, f"document.querySelector('{card}').dataset.status === 'complete'", "complete by polling", timeout=60)
    assert page.evaluate("document.querySelector('#channel-mode').dataset.mode") == "polling"
    partial = [s["summary"] for s in shown_states(page, content_id) if s["stage"] == "summarizing" and s["summary"]]
    final = text_of(page, f"{card} .summary p")
    assert partial, "no partial summary was shown while polling"
    assert all(final.startswith(text) for text in partial) and len(partial[0]) < len(final), partial


@pytest.fixture
def cut_ai() -> Iterator[OpenAICompatibleServer]:
    """A model whose stream is cut after 20 of its 40 chunks, as a crashed model server's."""
    server = OpenAICompatibleServer(stream=True, chunks=40, chunk_delay=0.1, fail_at=20)
    yield server
    server.close()


@pytest.fixture
def cut_worker(cut_ai) -> Iterator[Worker]:
    process = Worker(AI_PROVIDER="openai", AI_BASE_URL=cut_ai.url("/v1"), AI_API_KEY="test")
    yield process
    process.stop()


def test_an_error_mid_stream_keeps_the_partial_summary_shown_until_failed_with_its_message(
    owner_with_channel, server, cut_worker, browser,
):
    _, channel = owner_with_channel
    page = new_page(browser)
    page.add_init_script(RECORD_RESULTS)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "the live stream")
    content_id = submit_text(page, "Tides", TIDE_TEXT)
    cut_worker.start()
    card = f'[data-content-id="{content_id}"]'
    wait(page, f"document.querySelector('{card}').dataset.status === 'error'", "failed", timeout=60)

    states = shown_states(page, content_id)
    generating = [s for s in states if s["status"] == "generating"]
    assert generating and generating[-1]["summary"], f"a partial summary was shown before the cut: {states}"
    seen = generating[-1]["summary"]
    # From the first partial to the failure, the summary shown never went back or away.
    after_first = states[next(i for i, s in enumerate(states) if s["summary"]):]
    summaries = [s["summary"] for s in after_first]
    assert all(summaries) and all(seen.startswith(text) for text in summaries), after_first
    assert [len(text) for text in summaries] == sorted(len(text) for text in summaries), after_first
    failed = states[-1]
    assert failed["status"] == "error" and failed["error"], failed
    assert failed["summary"] == seen, "the failed card keeps what was written before the cut"
    assert page.is_visible(f"{card} .retry")


@pytest.fixture
def quick_idle_server() -> Iterator[Daphne]:
    """daphne whose idle poll interval is 3 s rather than 30, so that an unchanged poll (304) comes soon."""
    daphne = Daphne(POLL_INTERVAL_IDLE="3")
    yield daphne
    daphne.close()


def test_a_blocked_stream_falls_back_to_polling_says_so_completes_and_returns_to_live(
    owner_with_channel, quick_idle_server, worker, site, browser,
):
    _, channel = owner_with_channel
    server = quick_idle_server
    page = new_page(browser)
    page.add_init_script(RECORD_CARDS)
    stream_attempts: list[str] = []
    polls: list[tuple[str, int, str | None]] = []

    def block(route) -> None:
        stream_attempts.append(route.request.url)
        route.abort()

    def seen(response) -> None:
        if response.url.endswith("/status") or response.url.endswith("/status/batch"):
            polls.append((response.url.rsplit("/", 1)[1], response.status, response.request.headers.get("if-none-match")))

    page.on("response", seen)
    events_url = f"**/api/contents/{channel.id}/events*"
    log_in(page, server, "owner", "/app/")
    page.route(events_url, block)
    page.goto(server.url(f"/app/channels/{channel.id}/"))
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'polling'", "polling", timeout=20)
    assert len(stream_attempts) >= 3, "it tried the stream before falling back"
    wait(page, "document.querySelector('#channel-mode').textContent === 'Live updates unavailable: checking every 3 s'",
         "the server's idle interval on the indicator")

    content_id = submit_link(page, site.url("/tide-pools"))
    card = f'[data-content-id="{content_id}"]'
    worker.start()
    wait(page, f"document.querySelector('{card}').dataset.status === 'complete'", "complete by polling", timeout=60)
    history = card_history(page, content_id)
    assert_forward_only(history)
    assert page.evaluate("document.querySelector('#channel-mode').dataset.mode") == "polling"
    assert page.text_content(f"{card} .summary p") == "Tide pools are rocky pools full of life."
    # While processing the server asked for a poll every 2 s; each poll was conditional,
    # and the batch status was asked only when the channel's status had changed.
    wait(page, "document.querySelector('#channel-mode').textContent.includes('3 s')", "the idle interval again")
    page.wait_for_timeout(3500)
    status_polls = [p for p in polls if p[0] == "status"]
    assert any(code == 304 for _, code, _ in status_polls), status_polls
    assert all(etag for _, _, etag in status_polls[1:]), "every poll after the first sent If-None-Match"
    batches = [p for p in polls if p[0] == "batch"]
    assert 0 < len(batches) <= sum(1 for p in status_polls if p[1] == 200), polls

    # The stream answers again: the kit's next attempt opens it and polling stops.
    page.unroute(events_url, block)
    wait(page, "document.querySelector('#channel-mode').dataset.mode === 'live'", "live again", timeout=20)
    assert page.text_content("#channel-mode") == "Live"
    polls_when_live = len(polls)
    page.fill("#submit-form input[name=title]", "Glaciers")
    page.fill("#submit-form textarea[name=description]", "A glacier is a river of ice. It moves under its own weight. Meltwater lets it slide.")
    second = submit_link(page, "")
    wait(page, f"document.querySelector('[data-content-id=\"{second}\"]').dataset.status === 'complete'", "complete live")
    assert_forward_only(card_history(page, second))
    assert len(polls) == polls_when_live, "no polling while live"
    streamed = page.evaluate(
        "(id) => window.aistatus.channelLog.filter((e) => e.kind === 'event').length", second)
    assert streamed >= 3, "the second content's stages came over the stream"


@pytest.fixture
def studio_owner():
    return make_user("maker")


def test_a_glitch_jobs_progress_reaches_100_its_result_plays_and_a_queued_job_cancels(
    studio_owner, server, worker, browser,
):
    page = new_page(browser)
    log_in(page, server, "maker", "/app/studio/")
    wait(page, "document.querySelector('[data-feed=\"user\"]').dataset.mode === 'live'", "the user stream")
    wait(page, "document.querySelector('#credits').dataset.balance === '100'", "the balance")

    # Upload through the page.
    page.set_input_files("#upload-form input[name=file]", files=[FilePayload(
        name="waves.mp4", mimeType="video/mp4", buffer=make_video(seconds=4, width=320, height=240, fps=15))])
    page.fill("#upload-form input[name=title]", "Waves")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector(".video .video-title:text('Waves')")

    # A job queued while no worker runs: cancelled, and it costs nothing.
    page.click(".video .start-remix")
    page.wait_for_selector(".job[data-status='queued']")
    page.click(".job[data-status='queued'] .cancel")
    page.wait_for_selector(".job[data-status='failed'] .badge:text('Cancelled')")

    page.evaluate("""() => { window.__progress = [];
        new MutationObserver(() => { for (const job of document.querySelectorAll('.job')) {
            const value = job.querySelector('progress')?.value; const last = window.__progress.at(-1);
            if (job.dataset.status !== 'failed' && (!last || last.value !== value || last.status !== job.dataset.status))
                window.__progress.push({ status: job.dataset.status, value }); } })
          .observe(document.getElementById('jobs'), { subtree: true, childList: true, attributes: true }); }""")
    page.click(".video .start-glitch")
    worker.start()
    wait(page, "document.querySelector('.job[data-status=\"completed\"] video.result') !== null", "the result", timeout=60)
    progress = page.evaluate("window.__progress")
    assert progress[-1] == {"status": "completed", "value": 100}, progress
    values = [p["value"] for p in progress]
    assert values == sorted(values), f"progress never went back: {progress}"
    assert {"queued", "processing", "completed"} <= {p["status"] for p in progress}, progress
    wait(page, "document.querySelector('#credits').dataset.balance === '90'", "the glitch's cost taken")

    # The result plays.
    played = page.evaluate("""async () => {
        const video = document.querySelector('.job[data-status="completed"] video.result');
        await video.play();
        await new Promise((resolve) => setTimeout(resolve, 800));
        return { time: video.currentTime, error: video.error && video.error.code, width: video.videoWidth };
    }""")
    assert played["error"] is None and played["time"] > 0 and played["width"] == 320, played
    # The finished job rang the bell (the cancelled one too).
    wait(page, "document.querySelector('.bell-count').dataset.count === '2'", "the bell")


def test_the_kit_streams_over_a_websocket_with_tickets_when_given_a_bearer_token(owner_with_channel, server, worker, browser):
    owner, channel = owner_with_channel
    token = AuthToken.objects.create(user=owner)[1]
    page = new_page(browser)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(server.url("/accounts/login/"))  # the kit's origin; no session
    worker.start()
    state = page.evaluate("""async ({ channelId, token }) => {
        const { ChannelFeed } = await import('/static/web/kit/channel.js');
        const feed = new ChannelFeed({ channelId, token, transport: 'websocket' });
        await feed.start();
        await new Promise((resolve) => feed.onMode((mode) => mode === 'live' && resolve()));
        const content = await feed.submit({ title: 'Tides', description: 'Tide pools hold sea water. Starfish live in them. Crabs hide under rocks.' });
        await new Promise((resolve) => feed.subscribe((s) => s.contents.some((c) => c.id === content.id && c.status === 'complete') && resolve()));
        return { mode: feed.mode, content: feed.get(content.id) };
    }""", {"channelId": str(channel.id), "token": token})
    assert state["mode"] == "live"
    assert state["content"]["status"] == "complete" and state["content"]["ai_gen_metadata"]["summary"]
    assert len(sockets) == 1 and "ticket=" in sockets[0] and token not in sockets[0], sockets


def test_each_page_in_english_and_korean_with_the_demo_data_and_the_switch(server, browser):
    from web.demo import seed_demo

    seed_demo()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for locale, lang in (("en-US", "en"), ("ko-KR", "ko")):
        page = new_page(browser, locale=locale)
        assert_under_csp(page.goto(server.url("/accounts/login/?next=/app/")))
        assert page.get_attribute("html", "lang") == lang
        page.screenshot(path=SCREENSHOTS / f"login-{lang}.png")
        page.fill("input[name=username]", "demo")
        page.fill("input[name=password]", "demo-password")
        page.click("form[action='/accounts/login/'] button[type=submit]")
        page.wait_for_url("**/app/")
        page.click(".channel-list a")
        page.wait_for_selector("#channel-mode[data-mode='live']")
        statuses = page.eval_on_selector_all("[data-content-id]", "els => els.map((e) => e.dataset.status)")
        assert sorted(statuses) == ["complete", "complete", "error", "generating", "idle"], "every state at once"
        page.wait_for_selector(".bell-count[data-count='6']")
        page.screenshot(path=SCREENSHOTS / f"channel-{lang}.png", full_page=True)
        page.click(".bell-button")
        page.wait_for_selector(".bell-panel:not([hidden]) .bell-list li")
        page.screenshot(path=SCREENSHOTS / f"bell-{lang}.png")
        # The channel page and its bell ran, live, under the site's policy.
        assert csp_violations(page) == []
        assert_under_csp(page.goto(server.url("/app/studio/")))
        page.wait_for_selector(".job[data-status='completed'] video.result")
        # A frame of the result on the player, not its loading spinner.
        page.evaluate("""async () => {
            const video = document.querySelector('.job video.result');
            await video.play();
            await new Promise((resolve) => setTimeout(resolve, 1200));
            video.pause();
        }""")
        page.mouse.move(0, 0)  # the player's controls fade without the pointer
        page.screenshot(path=SCREENSHOTS / f"studio-{lang}.png", full_page=True)
        words = {"en": ("Studio", "Your videos", "Done"), "ko": ("스튜디오", "내 영상", "완료")}[lang]
        text = text_of(page, "body")
        assert all(word in text for word in words), text
        assert csp_violations(page) == []
        errors = [m for m in console_of(page) if m.startswith(("error", "pageerror"))]
        assert errors == []
        page.context.close()

    # The switch: an English browser asks for Korean, and the choice sticks.
    page = new_page(browser, locale="en-US")
    page.goto(server.url("/accounts/login/?next=/app/studio/"))
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo-password")
    page.click("form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_url("**/app/studio/")
    assert page.text_content("h1") == "Studio"
    page.click(".language button[value=ko]")
    page.wait_for_selector("html[lang=ko]")
    assert page.text_content("h1") == "스튜디오"
    page.goto(server.url("/app/"))
    assert page.text_content("h1") == "채널"


@pytest.fixture
def hostile():
    """Server data written to run as markup, made through the services (which store what
    they are given; the API's own validation is not what protects the page)."""
    from contents.services import content_move, content_submit

    owner = make_user("owner")
    channel = channel_create(owner=owner, name="<b>Bold</b> channel")
    markup = '<img src=x onerror="window.__xss = 1">'
    content = content_submit(channel=channel, provider=owner, title=markup, url="javascript:window.__xss=2")
    content_move(content, to="failed", error_message=f"<script>window.__xss = 3</script>{markup}")
    return channel, markup


def test_server_data_is_shown_as_text_never_as_markup(hostile, server, browser):
    channel, markup = hostile
    page = new_page(browser)
    log_in(page, server, "owner", f"/app/channels/{channel.id}/")
    page.wait_for_selector("[data-content-id] .error-message")
    card = "[data-content-id]"
    assert page.text_content(f"{card} .card-title") == markup
    assert page.text_content(f"{card} .error-message") == f"<script>window.__xss = 3</script>{markup}"
    assert page.get_attribute(f"{card} .source", "href") is None, "a javascript: link is not a link"
    assert page.text_content(f"{card} .source") == "javascript:window.__xss=2"
    page.click(".bell-button")
    page.wait_for_selector(".bell-list li.unread")
    assert markup in text_of(page, ".bell-list li.unread")
    assert page.text_content("h1") == "<b>Bold</b> channel"
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, #bell img, main script").count() == 0


@pytest.fixture
def maker_with_video():
    owner = make_user("maker")
    video_upload(owner=owner, file=SimpleUploadedFile("waves.mp4", make_video(seconds=2, width=320, height=240)), title="Waves")
    return owner


def test_the_studio_polls_when_its_websocket_is_refused_and_still_sees_the_job_finish(maker_with_video, server, worker, browser):
    page = new_page(browser)
    refused: list[str] = []

    def refuse(ws) -> None:
        refused.append(ws.url)
        ws.close()

    page.route_web_socket("**/v1/ws", refuse)
    log_in(page, server, "maker", "/app/studio/")
    wait(page, "document.querySelector('[data-feed=\"user\"]').dataset.mode === 'polling'", "the studio polling")
    assert len(refused) >= 3
    assert text_of(page, "#bell .mode").startswith("Live updates unavailable")

    batch_polls: list[int] = []

    def count_batch_poll(response: Response) -> None:
        if response.url.endswith("/v1/ai/jobs/batch-status"):
            batch_polls.append(response.status)

    page.on("response", count_batch_poll)
    page.click(".video .start-glitch")
    worker.start()
    wait(page, "document.querySelector('.job[data-status=\"completed\"] video.result') !== null", "the result by polling", timeout=60)
    assert page.eval_on_selector(".job[data-status='completed'] progress", "p => p.value") == 100
    assert batch_polls and set(batch_polls) == {200}
    wait(page, "document.querySelector('#credits').dataset.balance === '90'", "the glitch's cost taken")
    # New notifications come with the snapshot the polling feed takes every 15 s.
    wait(page, "document.querySelector('.bell-count').dataset.count === '1'", "the bell, by polling", timeout=25)


@pytest.fixture
def maker_with_a_finished_job():
    """A user whose glitch job is done (run here, before the browser starts)."""
    from aijobs import runner
    from aijobs.services import job_create

    owner = make_user("maker")
    video = video_upload(owner=owner, file=SimpleUploadedFile("waves.mp4", make_video(seconds=1, width=320, height=240)),
                         title="Waves")
    job = job_create(owner=owner, kind="glitch", video=video, params={})
    runner.run(job.id)
    return owner


def test_a_studio_job_card_drawn_again_for_its_videos_title_keeps_its_player(maker_with_a_finished_job, server, browser):
    """The videos answer after the jobs (held here until the result's player is on the
    page): the card is drawn again to name its video, and the player it had stays the
    same element, so that a result being watched does not stop."""
    page = new_page(browser)
    held: list[Route] = []

    def hold(route: Route) -> None:  # a function: Playwright cannot wrap a builtin (list.append)
        held.append(route)

    page.route("**/v1/videos/feed*", hold)
    log_in(page, server, "maker", "/app/studio/")
    page.wait_for_selector(".job[data-status='completed'] video.result")
    assert held, "the videos were asked for"
    page.evaluate("window.__player = document.querySelector('.job video.result')")
    held[0].continue_()
    wait(page, "document.querySelector('.job .job-head .muted')?.textContent.includes('Waves')", "the card naming its video")
    assert page.evaluate("document.querySelector('.job video.result') === window.__player"), "the player was replaced"


@pytest.fixture
def admin_rows():
    """A superuser, a staff user who may only view videos, and a video (made before the
    browser starts)."""
    from django.contrib.auth.models import Permission

    make_user("root", is_staff=True, is_superuser=True)
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="videos", codename="view_video"))
    return video_upload(owner=make_user("maker"), file=SimpleUploadedFile("waves.mp4", make_video(seconds=1)), title="Waves")


def test_the_admin_and_the_api_docs_run_under_the_content_security_policy(admin_rows, server, browser):
    """The admin's scripts and styles (files, all of them), and Swagger UI (its script
    from a URL of its own), work under the site's policy."""
    video = admin_rows
    violations: dict[str, list[str]] = {}

    def visit(page: Page, path: str, ready: str) -> None:
        assert_under_csp(page.goto(server.url(path)))
        page.wait_for_selector(ready)
        violations[path] = csp_violations(page)

    page = new_page(browser)
    # Console errors but the admin's missing /favicon.ico (it links none; the browser asks).
    errors: list[str] = []

    def record_errors(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            errors.append(f"{message.text} at {message.location['url']}")

    page.on("console", record_errors)
    assert_under_csp(page.goto(server.url("/admin/login/")))
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    visit(page, "/admin/", "#content-main")
    visit(page, f"/admin/videos/video/{video.id}/change/", ".datetimeshortcuts")  # drawn by the admin's script
    visit(page, "/admin/videos/video/", "select[name=action]")
    # The action: its checkbox script counts the selection; then the intermediate page.
    page.check(f"input[name=_selected_action][value='{video.id}']")
    page.wait_for_selector(".action-counter:has-text('1 of')")
    page.select_option("select[name=action]", "delete_videos_with_reason")
    page.click("button[name=index]")
    page.wait_for_selector("textarea[name=reason]")
    violations["the action's page"] = csp_violations(page)
    visit(page, "/api/docs/", ".swagger-ui .info")

    # A changelist without actions, as a staff user who may only view sees it.
    viewer = new_page(browser)
    viewer.on("console", record_errors)
    viewer.goto(server.url("/admin/login/?next=/admin/videos/video/"))
    viewer.fill("input[name=username]", "viewer")
    viewer.fill("input[name=password]", "pw-viewer")
    viewer.click("input[type=submit]")
    viewer.wait_for_selector("#result_list")
    assert viewer.locator("select[name=action]").count() == 0
    violations["a changelist without actions"] = csp_violations(viewer)

    assert {path: found for path, found in violations.items() if found} == {}
    assert errors == []
