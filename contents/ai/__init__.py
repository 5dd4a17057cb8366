"""The AI behind the pipeline: one small interface, two implementations.

- `embedded` (default): extractive, offline, no keys (sumy's LexRank for the summary,
  TextRank-ranked key sentences turned into questions).
- `openai`: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama),
  configured by AI_BASE_URL, AI_API_KEY and AI_MODEL.
"""

from typing import Protocol, TypedDict

from django.conf import settings


class QAPair(TypedDict):
    question: str
    answer: str


class AIProviderError(Exception):
    """The provider could not produce a result; the text says why, for the user."""


class AIProvider(Protocol):
    def summarize(self, text: str, *, title: str = "") -> str: ...

    def generate_qa(self, text: str, *, summary: str, count: int) -> list[QAPair]: ...


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
