"""Partial AI results (issue 21): what a streamed summary costs the database and the
outbox, and how fast its partial events reach subscribers next to status events.

1. Cost: the real pipeline (contents.pipeline.run, in this process) summarizes through
   the OpenAI-compatible provider against the loopback stub of the tests, streaming a
   2,000-token summary (one chunk a token, BENCH_PARTIAL_TOKENS_PER_S a second) and its
   Q&A; the rows and events written for the content, next to what a write per token or
   per sentence would have cost (AI_PARTIAL_INTERVAL is what bounds it).
2. Latency: BENCH_PARTIAL_SUBSCRIBERS subscribers (half SSE, half WebSocket, over two
   server processes in the production mode: the fan-out bench's clients and committer)
   receive, one at a time, status events (transitions) and partial events
   (record_progress with a growing summary of up to ~10 KB); commit -> receipt p50/p99
   of each kind, the status events being the baseline.
"""

import json
import os
import time
from typing import Any

from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from bench import harness
from bench.fanout import ask_all
from bench.reconnect_storm import ClientProcess, Committer, bench_setup, percentile, raise_fd_limit

TOKENS = 2000
TOKENS_PER_S = float(os.environ.get("BENCH_PARTIAL_TOKENS_PER_S", "200"))
SUBSCRIBERS = int(os.environ.get("BENCH_PARTIAL_SUBSCRIBERS", "1000"))
ROUNDS = int(os.environ.get("BENCH_PARTIAL_ROUNDS", "6"))
PARTIALS_PER_ROUND = 5
# 100 sentences of 20 words: a 2,000-token summary (a word a token, near enough).
SENTENCES = [
    f"Sentence {n} of the long summary says one more thing that the model found worth telling about the tide pools."
    for n in range(100)
]
LONG_SUMMARY = " ".join(SENTENCES)


def streamed_summary_cost() -> dict[str, Any]:
    """Rows and events one content costs when its 2,000-token summary is streamed."""
    from contents import pipeline
    from contents.eta import forget_stage_averages
    from contents.models import Content, StageRun
    from realtime.models import Event
    from tests.openai_stub import OpenAICompatibleServer

    user, _, channel = bench_setup("partial-cost")
    committer = Committer(channel, user)
    committer.commit()  # a content, uploading, as content_submit writes it (no RQ job: run here)
    content = committer.content
    assert content is not None
    # Its link is not fetched: the text is there, and the pipeline starts at summarizing.
    Content.objects.filter(id=content.id).update(source_text="Tide pools hold water. Starfish live there.")
    committer.commit()
    stub = OpenAICompatibleServer(stream=True, summary=LONG_SUMMARY, chunks=TOKENS, chunk_delay=1 / TOKENS_PER_S)
    forget_stage_averages()
    try:
        with override_settings(AI_PROVIDER="openai", AI_BASE_URL=stub.url("/v1")):
            started = time.monotonic()
            ended_in = pipeline.run(content.id)
            seconds = time.monotonic() - started
    finally:
        stub.close()
    row = Content.objects.get(id=content.id)
    if ended_in != "completed" or (row.ai_gen_metadata or {}).get("summary") != LONG_SUMMARY:
        raise RuntimeError(f"the pipeline ended in {ended_in}: {row.error_message}")
    events = list(Event.objects.filter(stream=committer.stream, payload__content_id=str(content.id)).values_list("type", "payload"))
    partial = [p for t, p in events if t == "content_status_update" and p.get("ai_gen_metadata") and p["processing_status"] == "summarizing"]
    summarize_seconds = stub.stream_times[0][1] - stub.stream_times[0][0]
    result = {
        "tokens": TOKENS, "sentences": len(SENTENCES), "tokens_per_s": TOKENS_PER_S, "pipeline_s": seconds,
        "summary_stream_s": summarize_seconds, "events": len(events), "summary_partial_events": len(partial),
        # Every write of the content raises its version by one (its first row is version 1).
        "content_row_writes": row.version,
        "stage_run_rows": StageRun.objects.filter(content_id=content.id).count(),
        "largest_event_bytes": max(len(json.dumps(p)) for _, p in events),
    }
    committer.cleanup()
    return result


class PartialCommitter(Committer):
    """The fan-out's committer, plus partial results: while its content is summarizing,
    `partial()` writes a growing summary through the one lifecycle (record_progress)."""

    def partial(self, summary: str) -> int:
        from contents.services import content_record_progress

        assert self.content is not None and self.content.processing_status == "summarizing"
        started = time.time()
        with transaction.atomic():
            if content_record_progress(
                self.content,
                changes={"ai_gen_metadata": {"summary": summary, "qa_list": []}, "progress": 31, "updated_at": timezone.now()},
            ) is None:
                raise RuntimeError("the bench content was moved by someone else")
        self.last += 1
        self.committed[self.last] = (str(self.content.id), self.content.version)
        self.commit_times[self.last] = started
        return self.last


def delivery_latency(database_url: str) -> dict[str, Any]:
    """Commit -> receipt of status and partial events at SUBSCRIBERS subscribers."""
    user, token, channel = bench_setup("partial-latency")
    committer = PartialCommitter(channel, user)
    servers = harness.Servers(2, database_url, "partial")
    process: ClientProcess | None = None
    kinds: dict[int, str] = {}
    try:
        servers.start()
        process = ClientProcess(ports=servers.ports, channel_id=str(channel.id), token=token, count=SUBSCRIBERS,
                                log_path=servers.workdir / "clients.log", ramp_seconds=0.004)
        live = ask_all([process], "wait_live", timeout=max(25, SUBSCRIBERS / 100))[0]["live"]
        if live < SUBSCRIBERS:
            live = ask_all([process], "drop_offline", timeout=10)[0]["live"]
        time.sleep(1)

        def one(seq: int, kind: str) -> None:
            kinds[seq] = kind
            ask_all([process], "wait_current", [live], last=seq, timeout=20)
            time.sleep(0.1)

        for _ in range(ROUNDS):
            one(committer.commit(), "status")  # uploading
            one(committer.commit(), "status")  # summarizing
            for k in range(1, PARTIALS_PER_ROUND + 1):
                one(committer.partial(" ".join(SENTENCES[: 20 * k])), "partial")
            one(committer.commit(), "status")  # qa_generating
            one(committer.commit(), "status")  # completed
        committer.verify()
        reports = process.ask("report", timeout=120)["subscribers"]
    finally:
        if process is not None:
            process.close()
        servers.stop()
    committer.cleanup()
    latencies: dict[str, list[float]] = {"status": [], "partial": []}
    for subscriber in reports:
        for seq, _, _, received in subscriber["events"]:
            if seq in kinds:
                latencies[kinds[seq]].append(received - committer.commit_times[seq])
    return {
        "subscribers": SUBSCRIBERS, "live": live,
        **{f"{kind}_{name}": value for kind, values in latencies.items() for name, value in (
            ("events", sum(1 for k in kinds.values() if k == kind)), ("deliveries", len(values)),
            ("p50_ms", percentile(values, 50) * 1000), ("p99_ms", percentile(values, 99) * 1000),
        )},
    }


def main() -> dict[str, Any]:
    raise_fd_limit()
    with harness.bench_db() as database_url:
        cost = streamed_summary_cost()
        latency = delivery_latency(database_url)
    print(f"partial_results: a {cost['tokens']}-token summary streamed at {cost['tokens_per_s']:.0f} tokens/s "
          f"({cost['summary_stream_s']:.1f} s), then its Q&A, through the real pipeline; baseline: a write per token "
          f"or per sentence")
    harness.print_table(
        ["writes per content", "content row writes", "events", "summary partial events", "per token", "per sentence",
         "stage runs", "largest event bytes"],
        [["coalesced (AI_PARTIAL_INTERVAL)", cost["content_row_writes"], cost["events"], cost["summary_partial_events"],
          cost["tokens"], cost["sentences"], cost["stage_run_rows"], cost["largest_event_bytes"]]],
    )
    print(f"partial_results: commit -> receipt at {latency['live']} subscribers (half SSE, half WebSocket, 2 "
          f"{harness.WEB_SERVER} processes), events one at a time; baseline: status events")
    harness.print_table(
        ["events", "count", "deliveries", "p50 ms", "p99 ms", "p99 ratio"],
        [[kind, latency[f"{kind}_events"], latency[f"{kind}_deliveries"], latency[f"{kind}_p50_ms"], latency[f"{kind}_p99_ms"],
          harness.ratio(latency[f"{kind}_p99_ms"], latency["status_p99_ms"])] for kind in ("status", "partial")],
    )
    return {"cost": cost, "latency": latency}

