"""A small OpenAI-compatible chat-completions server on loopback, started by tests.

By default it answers one JSON completion whatever the request asks (a server that
does not stream). With `stream=True` it answers a request for `stream: true` with
server-sent chunks, as OpenAI, vLLM and Ollama do: the summary in `chunks` pieces
`chunk_delay` seconds apart, the Q&A JSON likewise, then `data: [DONE]`. A test can
hold a stream at a chunk (`hold_at`: the stream waits for `release` once it has sent
that many chunks in all, and sets `held`), or cut it (`fail_at`: the connection is closed
after that many chunks, as a crashed model server would)."""

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.helpers import LocalHTTPServer

SUMMARY = "Tide pools are rocky pools full of life."
QA = [{"question": "Where do tide pools form?", "answer": "On rocky shores."}]
# A summary long enough to stream: 12 sentences, cut into the stream's chunks by words.
LONG_SUMMARY = " ".join(
    f"Sentence {n} tells how the {thing} of the tide pool {verb}."
    for n, (thing, verb) in enumerate(
        [("anemones", "catch shrimp"), ("starfish", "open mussels"), ("crabs", "hide under stones"),
         ("seaweed", "shelters small fish"), ("barnacles", "filter the water"), ("limpets", "grip the rock"),
         ("snails", "graze on algae"), ("sea urchins", "scrape the stone"), ("mussels", "cling in clusters"),
         ("gulls", "hunt at low tide"), ("visitors", "should step on bare rock"), ("tides", "refill the pools twice a day")],
        start=1,
    )
)
LONG_QA = [
    {"question": f"What does part {n} of the text say?", "answer": f"It says fact number {n} about the tide pools."}
    for n in range(1, 4)
]


def chat_completion(content: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }).encode()


def chunk_event(content: str) -> bytes:
    chunk = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": "test-model",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def split_words(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` consecutive parts (each ending after a word), which join back into it."""
    words = text.split(" ")
    size = max(1, -(-len(words) // pieces))
    parts = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return [part + (" " if n < len(parts) - 1 else "") for n, part in enumerate(parts)]


class OpenAICompatibleServer(LocalHTTPServer):
    """Answers summaries and Q&A; records each request body. `delay` makes it hang
    before answering."""

    def __init__(
        self, delay: float = 0.0, *, stream: bool = False, summary: str | Callable[[int], str] | None = None,
        qa: list[dict[str, str]] | None = None,
        chunks: int = 40, chunk_delay: float = 0.1, hold_at: int | None = None, fail_at: int | None = None,
    ) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []
        self.delay = delay
        self.stream = stream
        self.summary = summary if summary is not None else (LONG_SUMMARY if stream else SUMMARY)
        self.qa = qa if qa is not None else (LONG_QA if stream else QA)
        self.chunks, self.chunk_delay = chunks, chunk_delay
        self.hold_at, self.fail_at = hold_at, fail_at
        self.held, self.release = threading.Event(), threading.Event()
        self.chunks_sent = 0
        self.summaries_asked = 0
        # (first chunk, last chunk) times of each streamed answer, time.monotonic().
        self.stream_times: list[tuple[float, float]] = []
        self.routes["/v1/chat/completions"] = self._complete

    def _complete(self, handler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.bodies.append({"body": body, "authorization": handler.headers.get("Authorization")})
        if self.delay:
            time.sleep(self.delay)
        system = body["messages"][0]["content"]
        if "question and answer" in system:
            answer = "Here you go:\n" + json.dumps(self.qa)
            pieces = max(1, self.chunks // 4)
        else:
            # A callable summary tells the runs of one content apart: it is given the
            # summary request's number (1, 2, ...).
            self.summaries_asked += 1
            answer = self.summary(self.summaries_asked) if callable(self.summary) else self.summary
            pieces = self.chunks
        if self.stream and body.get("stream"):
            self._stream(handler, split_words(answer, pieces))
            return
        payload = chat_completion(answer)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _stream(self, handler, pieces: list[str]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        role = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        handler.wfile.write(b"data: " + json.dumps(role).encode() + b"\n\n")
        started = time.monotonic()
        for piece in pieces:
            if self.fail_at is not None and self.chunks_sent >= self.fail_at:
                handler.close_connection = True
                return  # the connection ends without [DONE]
            if self.hold_at is not None and self.chunks_sent == self.hold_at:
                self.held.set()
                self.release.wait(60)
            handler.wfile.write(chunk_event(piece))
            self.chunks_sent += 1
            time.sleep(self.chunk_delay)
        self.stream_times.append((started, time.monotonic()))
        handler.wfile.write(b"data: [DONE]\n\n")
