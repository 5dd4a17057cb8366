"""Stream clients that run in a thread and record everything they see, for tests that
leave streams open while they break things around them."""

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class SSECollector:
    """One SSE connection (no reconnect: the tests pin that the same connection lives
    on). `events` are the data frames as dicts with their id; `comments` are
    (seconds since connect, text) of the comment lines (heartbeats)."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, read_timeout: float = 40) -> None:
        self.events: list[dict[str, Any]] = []
        self.comments: list[tuple[float, str]] = []
        self.connected = threading.Event()
        self.ended: str | None = None
        self.status: int | None = None
        self.opened_at = time.monotonic()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=read_timeout))
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()
        if not self.connected.wait(15):
            raise RuntimeError(f"SSE did not connect (status {self.status}, ended {self.ended})")

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                frame: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop:
                        return
                    if line.startswith(":"):
                        self.comments.append((time.monotonic() - self.opened_at, line[1:].strip()))
                        if line.startswith(": connected at"):
                            self.connected.set()
                    elif line == "":
                        if "data" in frame:
                            self.events.append({"id": int(frame["id"]), **json.loads(frame["data"])})
                        frame = {}
                    else:
                        field, _, value = line.partition(":")
                        frame[field] = value.lstrip(" ")
            self.ended = "closed by the server"
        except Exception as error:  # noqa: BLE001 - recorded for the test to assert on
            self.ended = f"{type(error).__name__}: {error}"
        finally:
            self.connected.set()

    @property
    def ids(self) -> list[int]:
        return [event["id"] for event in self.events]

    def heartbeats(self) -> list[float]:
        return [at for at, text in self.comments if text.startswith("heartbeat")]

    def close(self) -> None:
        self._stop = True
        self._client.close()


class WSCollector:
    """One WebSocket connection, subscribed with `subscribe`; records every message.
    `headers` go with the handshake (a session cookie)."""

    def __init__(
        self, url: str, *, origin: str, subscribe: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.ended: str | None = None
        self.subscribed = threading.Event()
        self._socket = connect(url, origin=Origin(origin), open_timeout=10, additional_headers=headers)
        # Refused at once (e.g. 4401): the reader records how it ended.
        with contextlib.suppress(ConnectionClosed):
            self._socket.send(json.dumps(subscribe))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.subscribed.wait(15):
            raise RuntimeError(f"WebSocket not subscribed: {self.messages} {self.ended}")

    def _run(self) -> None:
        try:
            for raw in self._socket:
                message = json.loads(raw)
                self.messages.append(message)
                if message.get("type") == "subscribed":
                    self.subscribed.set()
        except ConnectionClosed as closed:
            self.ended = f"closed {closed.rcvd.code if closed.rcvd else None}"
        except Exception as error:  # noqa: BLE001 - recorded for the test to assert on
            self.ended = f"{type(error).__name__}: {error}"
        finally:
            self.close_code = self._socket.close_code
            if self.ended is None:
                self.ended = f"closed {self.close_code}"
            self.subscribed.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [{"id": m["id"], "type": m["type"], **m["data"]} for m in self.messages if "id" in m and "data" in m]

    @property
    def ids(self) -> list[int]:
        return [event["id"] for event in self.events]

    def send(self, message: dict[str, Any]) -> None:
        self._socket.send(json.dumps(message))

    def close(self) -> None:
        self._socket.close()


def ticket(api: Any) -> str:
    """A fresh single-use stream ticket for the API client's user."""
    return str(api.post("/v1/realtime/tickets").json()["ticket"])


def status_of(url: str, **kwargs: Any) -> int:
    """The status of a GET, without waiting for the body (a stream never ends)."""
    with httpx.stream("GET", url, timeout=10, **kwargs) as response:
        return response.status_code
