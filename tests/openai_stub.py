"""A small OpenAI-compatible chat-completions server on loopback, started by tests."""

import json
import time
from typing import Any

from tests.helpers import LocalHTTPServer


def chat_completion(content: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }).encode()


class OpenAICompatibleServer(LocalHTTPServer):
    """Answers summaries and Q&A; records each request body. `delay` makes it hang."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []
        self.delay = delay
        self.routes["/v1/chat/completions"] = self._complete

    def _complete(self, handler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.bodies.append({"body": body, "authorization": handler.headers.get("Authorization")})
        if self.delay:
            time.sleep(self.delay)
        system = body["messages"][0]["content"]
        if "question and answer" in system:
            answer = 'Here you go:\n[{"question": "Where do tide pools form?", "answer": "On rocky shores."}]'
        else:
            answer = "Tide pools are rocky pools full of life."
        payload = chat_completion(answer)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
