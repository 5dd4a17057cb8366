"""The AI behind the pipeline: one small interface, two implementations.

- `embedded` (default): extractive, offline, no keys (sumy's LexRank for the summary,
  TextRank-ranked key sentences turned into questions).
- `openai`: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama),
  configured by AI_BASE_URL, AI_API_KEY and AI_MODEL.

Both stream: `stream_summary` yields the summary so far each time it grows, and
`stream_qa` the pairs done so far each time one completes, so the pipeline can show
a partial result while the rest is generated. A provider that cannot stream yields
once, its whole result. The last yield is the result.
"""

from collections.abc import Iterator
from typing import Protocol, TypedDict

from django.conf import settings


class QAPair(TypedDict):
    question: str
    answer: str


class AIProviderError(Exception):
    """The provider could not produce a result; the text says why, for the user."""


class AIProvider(Protocol):
    def stream_summary(self, text: str, *, title: str = "") -> Iterator[str]:
        """The summary so far, each time it grows (each yield extends the one before)."""
        ...

    def stream_qa(self, text: str, *, summary: str, count: int) -> Iterator[list[QAPair]]:
        """The pairs done so far, each time one more is complete."""
        ...



def last[T](partials: Iterator[T], *, what: str) -> T:
    """The final result of a stream: its last yield."""
    result: T | None = None
    for result in partials:  # noqa: B007 - the last one is the result
        pass
    if result is None:
        raise AIProviderError(f"The AI provider returned no {what}.")
    return result


def summarize(provider: AIProvider, text: str, *, title: str = "") -> str:
    """The whole summary, for callers that do not show it growing."""
    return last(provider.stream_summary(text, title=title), what="summary")


def generate_qa(provider: AIProvider, text: str, *, summary: str, count: int) -> list[QAPair]:
    return last(provider.stream_qa(text, summary=summary, count=count), what="questions")


def get_provider() -> AIProvider:
    name = settings.AI_PROVIDER
    if name == "embedded":
        from contents.ai.embedded import EmbeddedProvider

        return EmbeddedProvider()
    if name == "openai":
        from contents.ai.openai import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            base_url=settings.AI_BASE_URL, api_key=settings.AI_API_KEY, model=settings.AI_MODEL, timeout=settings.AI_TIMEOUT
        )
    raise AIProviderError(f"Unknown AI_PROVIDER '{name}' (expected 'embedded' or 'openai').")
