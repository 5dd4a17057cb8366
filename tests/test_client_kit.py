"""The client kit's rules, run in headless Chromium on the kit's own files (served from
disk by Playwright, no server): merge by version, jobs only forward, each event id once,
resync refetches, polling after repeated failures and back to live, a refused
credential stops. The pages' browser tests (test_browser_pages.py) run the same kit
against a real server; these pin each rule on its own, with fake streams."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.chromium import CHROMIUM, CHROMIUM_ARGS

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
ORIGIN = "http://kit.test"


@pytest.fixture(scope="module")
def kit() -> Iterator[Page]:
    """A page on a made-up origin whose /static/ is web/static/ on disk."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def serve(route) -> None:
            path = route.request.url.removeprefix(ORIGIN)
            if path.startswith("/static/"):
                route.fulfill(path=STATIC / path.removeprefix("/static/"), content_type="text/javascript")
            else:
                route.fulfill(body="<!doctype html><title>kit</title>", content_type="text/html")

        page.route(f"{ORIGIN}/**", serve)
        page.goto(f"{ORIGIN}/")
        yield page
        browser.close()


def run(page: Page, script: str, arg: object = None):
    """An async function body, with the kit's modules as `live`, `channel`, `user`."""
    return page.evaluate(
        """async ([script, arg]) => {
            const live = await import('/static/web/kit/live.js');
            const channel = await import('/static/web/kit/channel.js');
            const user = await import('/static/web/kit/user.js');
            return await (new Function('live', 'channel', 'user', 'arg', `return (async () => {${script}})();`))(live, channel, user, arg);
        }""",
        [script, arg],
    )


def test_a_late_or_repeated_content_state_never_moves_a_card_back(kit):
    result = run(kit, """
        const { mergeContent } = channel;
        const generating = { id: 'a', version: 3, status: 'generating', processing_status: 'qa_generating', progress: 65,
                             estimated_completion: '2026-01-01T00:00:09Z' };
        const complete = { id: 'a', version: 4, status: 'complete', processing_status: 'completed', progress: 100,
                           estimated_completion: null, ai_gen_metadata: { summary: 'S', qa_list: [] } };
        let state = mergeContent(undefined, generating);
        state = mergeContent(state, complete) ?? state;
        const late = mergeContent(state, generating);            // an older event, replayed or late
        const repeated = mergeContent(state, { ...complete });     // the same event again
        const batchRow = mergeContent(state, { id: 'a', version: 4, status: 'complete', processing_status: 'completed',
                                               progress: 100, error_message: null });  // same state, no result
        const regenerated = mergeContent(state, { id: 'a', version: 5, status: 'idle', processing_status: 'uploading', progress: 0 });
        return { state, late, repeated, batchRow, regenerated };
    """)
    assert result["state"]["version"] == 4 and result["state"]["status"] == "complete"
    assert result["late"] is None, "an older version changes nothing"
    assert result["repeated"] is None, "a repeat changes nothing"
    assert result["batchRow"] is None, "the same version without the result keeps the result"
    assert result["regenerated"]["status"] == "idle"
    assert result["regenerated"]["ai_gen_metadata"] is None, "a regenerated content drops its old result"


def test_the_same_version_only_fills_what_was_missing(kit):
    result = run(kit, """
        const fromEvent = { id: 'a', version: 1, status: 'idle', processing_status: 'uploading', progress: 0,
                            updated_at: '2026-01-01T00:00:00+00:00' };
        const fromPost = { id: 'a', version: 1, status: 'idle', processing_status: 'uploading', progress: 0,
                           title: 'Tides', updated_at: '2026-01-01T00:00:00Z' };
        return channel.mergeContent(fromEvent, fromPost);
    """)
    assert result["title"] == "Tides"
    assert result["updated_at"] == "2026-01-01T00:00:00+00:00", "present fields are not overwritten at the same version"


def test_a_job_moves_only_forward_whether_the_update_has_a_version_or_not(kit):
    result = run(kit, """
        const { jobIsNewer } = user;
        const at60 = { id: 'j', status: 'processing', progress: 60, version: 8 };
        return {
            lateEvent: jobIsNewer(at60, { id: 'j', status: 'processing', progress: 50, version: 7 }),
            pollBehind: jobIsNewer(at60, { id: 'j', status: 'processing', progress: 40 }),   // batch status: no version
            pollAhead: jobIsNewer(at60, { id: 'j', status: 'processing', progress: 70 }),
            repeat: jobIsNewer(at60, { ...at60 }),
            done: jobIsNewer(at60, { id: 'j', status: 'completed', progress: 100 }),
            afterDone: jobIsNewer({ id: 'j', status: 'completed', progress: 100, version: 9 }, at60),
            cancelled: jobIsNewer(at60, { id: 'j', status: 'failed', progress: 60, error: 'Cancelled' }),
        };
    """)
    assert result == {"lateEvent": False, "pollBehind": False, "pollAhead": True, "repeat": False, "done": True,
                      "afterDone": False, "cancelled": True}


# A FeedSource whose stream the test drives: `arg.opens` says, per attempt, whether the
# stream opens ('open') or fails ('fail'); the source records what the connection asked.
FAKE_SOURCE = """
    const calls = { snapshots: 0, opens: [], applied: [], polls: 0 };
    let handlers = null;
    const plan = [...arg.opens];
    const source = {
        snapshot: async () => { calls.snapshots += 1; return arg.head ?? 10; },
        open: async (fromId, on) => {
            calls.opens.push(fromId);
            handlers = on;
            const step = plan.length ? plan.shift() : 'open';
            setTimeout(() => step === 'open' ? on.opened() : on.closed('refused'), 1);
            return { close() {} };
        },
        apply: (id, type, data) => calls.applied.push(id),
        poll: async () => { calls.polls += 1; return { seconds: 0.02, lastEventId: null }; },
    };
    const connection = new live.LiveConnection(source, { reconnectBaseMs: 5, reconnectMaxMs: 20, fallbackAfter: 3,
                                                         openTimeoutMs: arg.openTimeoutMs ?? 10000 });
    const modes = [];
    connection.onMode((mode) => modes.push(mode));
    const until = async (predicate, what) => {
        for (let i = 0; i < 400; i += 1) { if (predicate()) return; await new Promise((r) => setTimeout(r, 5)); }
        throw new Error('timed out: ' + what + ' ' + JSON.stringify({ modes, calls }));
    };
"""


def test_repeated_event_ids_are_dropped_and_a_resync_refetches(kit):
    result = run(kit, FAKE_SOURCE + """
        await connection.start();
        await until(() => connection.mode === 'live', 'live');
        for (const id of [11, 12, 12, 11, 13]) handlers.event(id, 'content_status_update', { version: id });
        handlers.resync(50);
        await until(() => calls.snapshots === 2, 'the refetch');
        handlers.event(49, 'content_status_update', {});
        handlers.event(51, 'content_status_update', {});
        connection.stop();
        return { calls, modes, last: connection.lastEventId };
    """, {"opens": ["open"], "head": 10})
    assert result["calls"]["opens"] == [10], "the stream opened where the snapshot ended"
    assert result["calls"]["applied"] == [11, 12, 13, 51], "each event id once; none from before the resync point"
    assert result["last"] == 51
    assert result["modes"] == ["live", "stopped"]


def test_a_stream_that_keeps_failing_falls_back_to_polling_and_returns_to_live_when_it_opens(kit):
    result = run(kit, FAKE_SOURCE + """
        await connection.start();
        await until(() => connection.mode === 'live', 'live at last');
        const pollsWhenLive = calls.polls;
        await new Promise((r) => setTimeout(r, 100));
        connection.stop();
        return { calls, modes, pollsWhenLive };
    """, {"opens": ["fail", "fail", "fail", "fail", "fail"]})
    assert result["modes"][:3] == ["reconnecting", "polling", "live"], result["modes"]
    assert result["calls"]["polls"] >= 1, "it polled while the stream failed"
    assert result["calls"]["polls"] == result["pollsWhenLive"], "no polling once live"
    assert len(result["calls"]["opens"]) == 6, "it kept trying the stream while polling"


def test_a_stream_that_opens_and_drops_at_once_still_ends_up_polling(kit):
    result = run(kit, FAKE_SOURCE + """
        source.open = async (fromId, on) => {
            calls.opens.push(fromId);
            setTimeout(() => { on.opened(); setTimeout(() => on.closed('dropped'), 1); }, 1);
            return { close() {} };
        };
        await connection.start();
        await until(() => modes.includes('polling'), 'polling');
        connection.stop();
        return { modes, opens: calls.opens.length };
    """, {"opens": []})
    assert "polling" in result["modes"], result
    assert result["opens"] >= 3


def test_a_refused_credential_stops_the_feed(kit):
    result = run(kit, FAKE_SOURCE + """
        source.open = async (fromId, on) => { setTimeout(() => on.closed('closed 4401', { fatal: true }), 1); return { close() {} }; };
        await connection.start();
        await until(() => connection.mode === 'stopped', 'stopped');
        const opensAtStop = calls.opens.length;
        await new Promise((r) => setTimeout(r, 60));
        return { modes, polls: calls.polls };
    """, {"opens": []})
    assert result == {"modes": ["stopped"], "polls": 0}


def test_an_older_unread_count_never_replaces_a_newer_one(kit):
    result = run(kit, """
        const feed = new user.UserFeed();
        feed.setUnread(3, 20);   // from an event with id 20
        feed.setUnread(5, 12);   // a snapshot read at event 12 (a resync's refetch answering late)
        const afterSnapshot = feed.unreadCount;
        feed.setUnread(0, 21);
        return { afterSnapshot, now: feed.unreadCount };
    """)
    assert result == {"afterSnapshot": 3, "now": 0}


def test_a_stream_that_never_opens_counts_as_failed_and_the_feed_polls(kit):
    result = run(kit, FAKE_SOURCE + """
        source.open = async (fromId, on) => { calls.opens.push(fromId); return { close() { calls.closed = (calls.closed ?? 0) + 1; } }; };
        await connection.start();
        await until(() => connection.mode === 'polling', 'polling');
        connection.stop();
        return { modes, opens: calls.opens.length, closed: calls.closed };
    """, {"opens": [], "openTimeoutMs": 30})
    assert result["modes"][:2] == ["reconnecting", "polling"], result
    assert result["opens"] >= 3 and result["closed"] >= 3, "each held attempt was closed"


def test_partial_results_merge_by_version_and_a_new_run_replaces_the_old_ones(kit):
    result = run(kit, """
        const { mergeContent } = channel;
        const at = (version, fields) => ({ id: 'a', version, status: 'generating', processing_status: 'summarizing',
                                           progress: 30 + version, ...fields });
        let state = mergeContent(undefined, at(2, { ai_gen_metadata: { summary: 'Tide', qa_list: [] } }));
        state = mergeContent(state, at(3, { ai_gen_metadata: { summary: 'Tide pools', qa_list: [] } })) ?? state;
        const lateShorter = mergeContent(state, at(2, { ai_gen_metadata: { summary: 'Tide', qa_list: [] } }));
        const pairs = mergeContent(state, at(4, { processing_status: 'qa_generating',
            ai_gen_metadata: { summary: 'Tide pools.', qa_list: [{ question: 'Q1', answer: 'A1' }] } }));
        // The sweep hands the content to a new run, whose first partial starts over: a higher version, reset.
        const retried = mergeContent(pairs, at(5, { ai_gen_metadata: { summary: '', qa_list: [] } }));
        const oldRunLate = mergeContent(retried, at(4, { ai_gen_metadata: { summary: 'Tide pools, old run', qa_list: [] } }));
        const regenerated = mergeContent(pairs, { id: 'a', version: 6, status: 'idle', processing_status: 'uploading', progress: 0 });
        // A failure mid-stream: its event carries no result; what was written stays until a retry.
        const failed = mergeContent(pairs, { id: 'a', version: 7, status: 'error', processing_status: 'failed',
                                             progress: 70, error_message: 'The stream was cut.' });
        const retriedAfterFailure = mergeContent(failed, { id: 'a', version: 8, status: 'idle', processing_status: 'uploading',
                                                           progress: 0, error_message: null });
        return { state, lateShorter, pairs, retried, oldRunLate, regenerated, failed, retriedAfterFailure };
    """)
    assert result["state"]["ai_gen_metadata"]["summary"] == "Tide pools" and result["state"]["progress"] == 33
    assert result["lateShorter"] is None, "an older partial never shortens the summary shown"
    assert result["pairs"]["ai_gen_metadata"]["qa_list"] == [{"question": "Q1", "answer": "A1"}]
    assert result["retried"]["ai_gen_metadata"] == {"summary": "", "qa_list": []}, "a new run's reset replaces the old partial"
    assert result["oldRunLate"] is None, "the old run's partial, late, is not mixed back in"
    assert result["regenerated"]["ai_gen_metadata"] is None, "a regenerate drops the partial result"
    assert result["failed"]["error_message"] == "The stream was cut."
    assert result["failed"]["ai_gen_metadata"]["summary"] == "Tide pools.", "a failure keeps what was written"
    assert result["retriedAfterFailure"]["ai_gen_metadata"] is None, "a retry drops it"


def test_details_fill_in_at_any_version_and_a_known_title_is_never_emptied(kit):
    result = run(kit, """
        const { mergeContent } = channel;
        // The event that made the content known, then partial events raising the version
        // while its detail (read at version 2) was on its way.
        let state = mergeContent(undefined, { id: 'a', version: 4, status: 'generating', processing_status: 'summarizing',
                                              progress: 40, ai_gen_metadata: { summary: 'Tide pools', qa_list: [] } });
        const detail = { id: 'a', version: 2, status: 'generating', processing_status: 'summarizing', progress: 30,
                         ai_gen_metadata: null, title: 'Tides', url: '', description: 'Tide pools hold sea water.',
                         created_at: '2026-01-01T00:00:00Z' };
        state = mergeContent(state, detail);
        const emptied = mergeContent(state, { id: 'a', version: 5, status: 'generating', processing_status: 'summarizing',
                                              progress: 45, title: '', description: null,
                                              ai_gen_metadata: { summary: 'Tide pools hold', qa_list: [] } });
        return { state, emptied };
    """)
    state = result["state"]
    assert (state["title"], state["description"], state["created_at"]) == ("Tides", "Tide pools hold sea water.", "2026-01-01T00:00:00Z")
    assert (state["version"], state["progress"], state["ai_gen_metadata"]["summary"]) == (4, 40, "Tide pools"), \
        "an older detail describes the content but never moves its state back"
    assert result["emptied"]["title"] == "Tides" and result["emptied"]["description"] == "Tide pools hold sea water."
    assert result["emptied"]["ai_gen_metadata"]["summary"] == "Tide pools hold"


# A fetch whose answers the test releases: each request waits in `pending` until the
# test answers it (`answer(path, body)` or `fail(path)`).
FAKE_FETCH = """
    const pending = [];
    const fetch = (url, init) => new Promise((resolve, reject) => pending.push({ url: String(url), init, resolve, reject }));
    const take = async (path) => {
        for (let i = 0; i < 400; i += 1) {
            const index = pending.findIndex((p) => p.url.endsWith(path));
            if (index >= 0) return pending.splice(index, 1)[0];
            await new Promise((r) => setTimeout(r, 5));
        }
        throw new Error('no request for ' + path + ': ' + JSON.stringify(pending.map((p) => p.url)));
    };
    const answer = async (path, body) => (await take(path)).resolve(new Response(JSON.stringify(body), { status: 200 }));
    const fail = async (path) => (await take(path)).reject(new TypeError('Failed to fetch'));
    const feed = new channel.ChannelFeed({ channelId: 'c', fetch });
    const seen = [];
    feed.subscribe((state) => seen.push(state.contents.map((c) => ({ id: c.id, version: c.version, title: c.title ?? null }))));
    const event = { type: 'content_status_update', content_id: 'a', status: 'idle', processing_status: 'uploading',
                    progress: 0, estimated_completion: null, error_message: null, version: 1, timestamp: '2026-01-01T00:00:00+00:00' };
    const detail = { id: 'a', version: 1, status: 'idle', processing_status: 'uploading', progress: 0, title: 'Tides',
                     url: '', description: 'Tide pools.', ai_gen_metadata: null, created_at: '2026-01-01T00:00:00Z' };
"""


def test_a_content_first_known_from_an_event_is_published_with_its_detail(kit):
    result = run(kit, FAKE_FETCH + """
        feed.applyEvent(event);
        const beforeDetail = feed.store.getState().contents.length;
        await answer('/api/contents/a', detail);
        await new Promise((r) => setTimeout(r, 0));
        return { beforeDetail, seen };
    """)
    assert result["beforeDetail"] == 0, "not published from the event alone (it has no title)"
    assert [state for state in result["seen"] if state] == [[{"id": "a", "version": 1, "title": "Tides"}]]


def test_a_content_whose_detail_cannot_be_fetched_is_published_as_the_events_have_it(kit):
    result = run(kit, FAKE_FETCH + """
        feed.applyEvent(event);
        await fail('/api/contents/a');
        await new Promise((r) => setTimeout(r, 0));
        return seen;
    """)
    assert [state for state in result if state] == [[{"id": "a", "version": 1, "title": None}]]


def test_while_polling_a_generating_content_is_shown_with_its_partial_result(kit):
    result = run(kit, FAKE_FETCH + """
        feed.mergeAll([{ ...detail, status: 'generating', processing_status: 'summarizing', progress: 30, version: 2,
                         ai_gen_metadata: { summary: 'Tide', qa_list: [] } }]);
        const polled = feed.poll();
        await answer('/api/contents/c/status', { processing_contents: [{ id: 'a' }], completed_contents: [], failed_contents: [] });
        await answer('/api/contents/status/batch', { statuses: [{ id: 'a', status: 'generating', processing_status: 'summarizing',
            progress: 41, estimated_completion: null, error_message: null, version: 3 }], not_found: [] });
        await answer('/api/contents/a', { ...detail, status: 'generating', processing_status: 'summarizing', progress: 41,
                                          version: 3, ai_gen_metadata: { summary: 'Tide pools', qa_list: [] } });
        await polled;
        return feed.get('a');
    """)
    assert (result["version"], result["progress"]) == (3, 41)
    assert result["ai_gen_metadata"]["summary"] == "Tide pools", "the batch row (no result) was replaced by the detail"
