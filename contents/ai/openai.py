"""An OpenAI-compatible chat-completions provider (OpenAI, vLLM, Ollama, ...).

It asks for a streamed answer (`stream: true`) and reads the server-sent chunks
(`data: {"choices": [{"delta": {"content": "..."}}]}` ... `data: [DONE]`) as they
arrive, so the summary grows and the Q&A pairs appear one by one while the model
writes. A server that ignores `stream` and answers one JSON completion still works:
its answer is yielded once.

The base URL is operator configuration, not user input, so it is not passed through
the SSRF guard (a local Ollama on loopback is a normal setup)."""

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx

from contents.ai import AIProviderError, QAPair, generate_qa, summarize

MAX_INPUT_CHARS = 12000
_DECODER = json.JSONDecoder()


def _delta_of(data: str) -> tuple[str, bool]:
    """The text a streamed chunk adds (role-only and empty chunks add nothing), and
    whether it says the answer is finished (`finish_reason`)."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise AIProviderError("The AI provider's stream was not chat-completion chunks.") from exc
    if isinstance(chunk, dict) and chunk.get("error"):
        raise AIProviderError(f"The AI provider stopped with an error: {str(chunk['error'])[:200]}")
    try:
        choices = chunk["choices"]
        if not choices:
            return "", False  # e.g. the usage chunk some servers send last
        return (choices[0].get("delta") or {}).get("content") or "", bool(choices[0].get("finish_reason"))
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise AIProviderError("The AI provider's stream was not chat-completion chunks.") from exc


class QAStreamParser:
    """The pairs of a JSON array `[{"question": ..., "answer": ...}, ...]` as each
    object of it closes, from text that arrives in pieces (before it, the model may
    write a sentence; a pair is only taken once its object is complete)."""

    def __init__(self) -> None:
        self.text = ""
        self.position: int | None = None  # where the next object may start, once '[' is seen
        self.pairs: list[QAPair] = []
        self.ended = False

    def feed(self, piece: str) -> bool:
        """Add text; whether a pair was completed by it."""
        self.text += piece
        if self.position is None:
            start = self.text.find("[")
            if start < 0:
                return False
            self.position = start + 1
        found = False
        while not self.ended:
            rest = self.text[self.position:]
            stripped = rest.lstrip(" \t\r\n,")
            at = self.position + len(rest) - len(stripped)
            if not stripped:
                break
            if stripped[0] == "]":
                self.ended = True
                break
            try:
                item, end = _DECODER.raw_decode(self.text, at)
            except ValueError:
                break  # not complete yet (or not JSON: judged at the end)
            self.position = end
            if isinstance(item, dict) and item.get("question") and item.get("answer"):
                self.pairs.append({"question": str(item["question"]).strip(), "answer": str(item["answer"]).strip()})
                found = True
        return found


def pairs_of(answer: str) -> list[QAPair]:
    """The pairs of a whole answer (the stream parser's result checked once more)."""
    match = re.search(r"\[.*\]", answer, re.DOTALL)
    try:
        items = json.loads(match.group(0) if match else answer)
        return [
            {"question": str(i["question"]).strip(), "answer": str(i["answer"]).strip()}
            for i in items
            if isinstance(i, dict) and i.get("question") and i.get("answer")
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise AIProviderError("The AI provider's questions were not valid JSON.") from exc


class OpenAICompatibleProvider:
    def __init__(self, *, base_url: str, api_key: str, model: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.timeout = timeout

    def _stream(self, system: str, user: str) -> Iterator[str]:
        """The answer's text so far, each time a chunk adds to it. A server that does
        not stream answers once: its whole text is yielded once. The timeout bounds
        each wait (the answer's start, then the gap between chunks), as before."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.2,
            "stream": True,
        }
        try:
            with httpx.stream("POST", self.url, json=body, headers=self.headers, timeout=self.timeout) as response:
                if response.status_code != 200:
                    response.read()
                    raise AIProviderError(f"The AI provider answered HTTP {response.status_code}: {response.text[:200]}")
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    response.read()
                    yield self._whole(response)
                    return
                text, finished = "", False
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # comments, event names, blank separators
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    piece, last_chunk = _delta_of(data)
                    finished = finished or last_chunk
                    if piece:
                        text += piece
                        yield text
                if not finished:
                    # The connection ended mid-answer (the model server died): what came
                    # is not the answer, however plausible it looks.
                    raise AIProviderError("The AI provider's answer stopped before it was finished.")
        except httpx.TimeoutException as exc:
            raise AIProviderError(f"The AI provider did not answer within {self.timeout:.0f} s.") from exc
        except httpx.HTTPError as exc:
            raise AIProviderError(f"The AI provider could not be reached ({exc.__class__.__name__}).") from exc

    @staticmethod
    def _whole(response: httpx.Response) -> str:
        try:
            return response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise AIProviderError("The AI provider's answer was not a chat completion.") from exc

    def stream_summary(self, text: str, *, title: str = "") -> Iterator[str]:
        prompt = (f"Title: {title}\n\n" if title else "") + text[:MAX_INPUT_CHARS]
        produced = ""
        for so_far in self._stream(
            "Summarize the user's text in 2 to 4 sentences, in the language of the text. Answer with the summary only.",
            prompt,
        ):
            produced = so_far.strip()
            if produced:
                yield produced
        if not produced:
            raise AIProviderError("The AI provider returned an empty summary.")

    def stream_qa(self, text: str, *, summary: str, count: int) -> Iterator[list[QAPair]]:
        parser = QAStreamParser()
        answer = ""
        for so_far in self._stream(
            f"Write {count} question and answer pairs that a reader of the user's text would ask, in the text's "
            'language. Answer with JSON only: [{"question": "...", "answer": "..."}].',
            f"Summary: {summary}\n\nText:\n{text[:MAX_INPUT_CHARS]}",
        ):
            piece, answer = so_far[len(answer):], so_far
            if parser.feed(piece) and len(parser.pairs) <= count:
                yield list(parser.pairs)
        # The whole answer decides: a stream cut short of its closing bracket, or text
        # the incremental reader could not follow, is judged as the old reader did.
        pairs = pairs_of(answer)
        if not pairs:
            raise AIProviderError("The AI provider returned no questions.")
        if pairs[:count] != parser.pairs[:count]:
            yield pairs[:count]

    def summarize(self, text: str, *, title: str = "") -> str:
        return summarize(self, text, title=title)

    def generate_qa(self, text: str, *, summary: str, count: int) -> list[QAPair]:
        return generate_qa(self, text, summary=summary, count=count)
