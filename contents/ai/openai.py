"""An OpenAI-compatible chat-completions provider (OpenAI, vLLM, Ollama, ...).

The base URL is operator configuration, not user input, so it is not passed through
the SSRF guard (a local Ollama on loopback is a normal setup)."""

import json
import re

import httpx

from contents.ai import AIProviderError, QAPair

MAX_INPUT_CHARS = 12000


class OpenAICompatibleProvider:
    def __init__(self, *, base_url: str, api_key: str, model: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.timeout = timeout

    def _complete(self, system: str, user: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.2,
        }
        try:
            response = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise AIProviderError(f"The AI provider did not answer within {self.timeout:.0f} s.") from exc
        except httpx.HTTPError as exc:
            raise AIProviderError(f"The AI provider could not be reached ({exc.__class__.__name__}).") from exc
        if response.status_code != 200:
            raise AIProviderError(f"The AI provider answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()["choices"][0]["message"]["content"].strip()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise AIProviderError("The AI provider's answer was not a chat completion.") from exc

    def summarize(self, text: str, *, title: str = "") -> str:
        prompt = (f"Title: {title}\n\n" if title else "") + text[:MAX_INPUT_CHARS]
        summary = self._complete(
            "Summarize the user's text in 2 to 4 sentences, in the language of the text. Answer with the summary only.",
            prompt,
        )
        if not summary:
            raise AIProviderError("The AI provider returned an empty summary.")
        return summary

    def generate_qa(self, text: str, *, summary: str, count: int) -> list[QAPair]:
        answer = self._complete(
            f"Write {count} question and answer pairs that a reader of the user's text would ask, in the text's "
            'language. Answer with JSON only: [{"question": "...", "answer": "..."}].',
            f"Summary: {summary}\n\nText:\n{text[:MAX_INPUT_CHARS]}",
        )
        match = re.search(r"\[.*\]", answer, re.DOTALL)
        try:
            items = json.loads(match.group(0) if match else answer)
            pairs: list[QAPair] = [
                {"question": str(i["question"]).strip(), "answer": str(i["answer"]).strip()}
                for i in items
                if isinstance(i, dict) and i.get("question") and i.get("answer")
            ]
        except (ValueError, TypeError, KeyError) as exc:
            raise AIProviderError("The AI provider's questions were not valid JSON.") from exc
        if not pairs:
            raise AIProviderError("The AI provider returned no questions.")
        return pairs[:count]
