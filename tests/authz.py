"""What the authorisation matrix needs: every input of the API that takes an id
(enumerated from the OpenAPI schema, the URL resolver and the WebSocket router, so a
new endpoint shows up by itself); answers reduced to what a caller can compare
(status, headers, body; stream messages and close codes) with the probed id masked;
and the probes that ask a live server with an id, as a client would."""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from django.urls import URLPattern, URLResolver, get_resolver
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.live import Daphne
from tests.seeded import World, small_video

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}

# Headers that differ between any two requests, whatever they ask for.
VOLATILE_HEADERS = {"date", "x-request-id"}
# Fields of stream messages that carry the time they were sent.
VOLATILE_FIELDS = {"timestamp"}

# Ids a WebSocket takes inside its messages. The consumers read them from the
# subscribe message (contents.consumers, realtime.user_consumer), where no schema
# or router can see them: this is the one list kept by hand.
WEBSOCKET_MESSAGE_ID_FIELDS = {
    ("WS", "/api/contents/{channel_id}/ws", "message:channel_id"),
    # The seed sends it; the server must ignore it (the socket's user is the authenticated one).
    ("WS", "/api/contents/{channel_id}/ws", "message:user_id"),
    ("WS", "/v1/ws", "message:user_id"),
}

Key = tuple[str, str, str]


# --- what takes an id ---------------------------------------------------------------


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _is_uuid(schema: dict[str, Any], node: Any) -> bool:
    node = _resolve(schema, node)
    if not isinstance(node, dict):
        return False
    if node.get("format") == "uuid":
        return True
    if node.get("type") == "array":
        return _is_uuid(schema, node.get("items"))
    return any(_is_uuid(schema, option) for option in node.get("oneOf", []) + node.get("anyOf", []) + node.get("allOf", []))


def id_inputs_in_schema(schema: dict[str, Any]) -> set[Key]:
    """(METHOD, path, where) for every parameter and top-level body field that takes a
    uuid (or a list of them): `path:channel_id`, `body:content_ids`, ..."""
    found: set[Key] = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for reference in operation.get("parameters", []):
                parameter = _resolve(schema, reference)
                if _is_uuid(schema, parameter.get("schema")):
                    found.add((method.upper(), path, f"{parameter['in']}:{parameter['name']}"))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                body = _resolve(schema, media.get("schema"))
                for name, field in (body or {}).get("properties", {}).items():
                    if _is_uuid(schema, field):
                        found.add((method.upper(), path, f"body:{name}"))
    return found


def _patterns(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _openapi_path(route: str) -> str:
    """`api/contents/<uuid:content_id>` -> `/api/contents/{content_id}`."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def _takes_parameters(route: str) -> bool:
    return "<" in route or "(?P<" in route


def id_routes_in_urlconf() -> set[str]:
    """Every HTTP route of the URL resolver with a parameter in its path, as an
    OpenAPI path (regex routes, such as the admin's, as their pattern)."""
    return {_openapi_path(route) for route, _ in _patterns(get_resolver().url_patterns) if _takes_parameters(route)}


def id_inputs_of_websockets() -> set[Key]:
    """("WS", path, "path:<name>") for every parameter of a WebSocket route in config.asgi,
    plus the ids the consumers read from messages."""
    from config.asgi import websocket_routes

    found = set(WEBSOCKET_MESSAGE_ID_FIELDS)
    for route, pattern in _patterns(websocket_routes.routes):
        path = _openapi_path(route)
        for name in pattern.pattern.converters:
            found.add(("WS", path, f"path:{name}"))
    return found


# --- answers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a caller sees, with the probed id replaced by `{id}`."""

    status: int | str
    headers: tuple[tuple[str, str], ...]
    body: Any


def _masked(text: str, probed: str | None) -> str:
    return text.replace(probed, "{id}") if probed else text


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _cookie_shape(value: str) -> str:
    """A Set-Cookie's name and attributes: its value (a fresh CSRF token, say) and expiry
    time differ on every response."""
    name, _, rest = value.partition("=")
    attributes = [part.strip() for part in rest.split(";")[1:] if not part.strip().lower().startswith("expires=")]
    return "; ".join([f"{name}=...", *attributes])


def http_answer(response: httpx.Response, probed: str, *, body: bytes | None = None) -> Answer:
    raw = _masked((response.content if body is None else body).decode(errors="replace"), probed)
    try:
        parsed: Any = _without_volatile(json.loads(raw)) if raw else ""
    except ValueError:
        parsed = raw
    headers = tuple(sorted(
        (name.lower(), _cookie_shape(value) if name.lower() == "set-cookie" else _masked(value, probed))
        for name, value in response.headers.multi_items()
        if name.lower() not in VOLATILE_HEADERS
    ))
    return Answer(response.status_code, headers, parsed)


def sse_answer(client: httpx.Client, url: str, probed: str, **kwargs: Any) -> Answer:
    """A stream that opens is read only up to its first comment (it would never end)."""
    with client.stream("GET", url, timeout=httpx.Timeout(10, read=5), **kwargs) as response:
        if response.status_code == 200:
            first = next(response.iter_lines(), "")
            return http_answer(response, probed, body=first.encode())
        return http_answer(response, probed, body=response.read())


def websocket_answer(
    url: str, origin: str, messages: list[dict[str, Any]], probed: str | None, *, until: str = "pong"
) -> Answer:
    """Send `messages`, then read until a message of type `until` or the close; the
    answer is every message (the probed id masked, unless None; without timestamps)
    and the close code."""
    received: list[Any] = []
    close_code: int | None = None
    with connect(url, origin=Origin(origin), open_timeout=10) as socket:
        try:
            for message in messages:
                socket.send(json.dumps(message))
            while True:
                message = json.loads(_masked(socket.recv(timeout=10, decode=True), probed))
                received.append(_without_volatile(message))
                if message.get("type") == until:
                    break
        except ConnectionClosed as closed:
            close_code = closed.rcvd.code if closed.rcvd else None
    return Answer(close_code or "open", (), received)


# --- probes: asking the live server as me -------------------------------------------


@dataclass
class Caller:
    """Me, against the live server."""

    server: Daphne
    world: World
    http: httpx.Client
    # My browser's session cookie (committed with the world: daphne must see it).
    session_cookie: str

    def rest(self, method: str, path: str, probed: str, *, staff: bool = False, **kwargs: Any) -> Answer:
        token = self.world.staff_token if staff else self.world.me.token
        response = self.http.request(method, self.server.url(path), headers={"Authorization": f"Bearer {token}"}, **kwargs)
        return http_answer(response, probed)

    def ticket(self) -> str:
        response = self.http.post(self.server.url("/v1/realtime/tickets"), headers=self.world.me.headers)
        assert response.status_code == 201, response.text
        return response.json()["ticket"]

    def websocket(self, path: str, messages: list[dict[str, Any]], probed: str | None) -> Answer:
        url = self.server.ws_url(f"{path}?ticket={self.ticket()}")
        return websocket_answer(url, self.server.origin, messages, probed)

    def page(self, path: str, probed: str) -> Answer:
        return http_answer(self.http.get(self.server.url(path), headers={"Cookie": self.session_cookie}), probed)


Ask = Callable[[Caller, str], Answer]


@dataclass(frozen=True)
class Probe:
    """One input that takes an id: how to ask with an id, another user's id for it,
    and my own (whose answer must differ from a missing id's, or the probe proves
    nothing), unless the input ignores the id by design."""

    key: Key
    ask: Ask
    theirs: Callable[[World], Any]
    own: Callable[[World], Any] | None = None


def rest(method: str, template: str, **kwargs: Any) -> Ask:
    return lambda caller, id_: caller.rest(method, template.format(id=id_), id_, **kwargs)


def batch(method: str, path: str, field: str, *, staff: bool = False, **extra: Any) -> Ask:
    return lambda caller, id_: caller.rest(method, path, id_, staff=staff, json={field: [id_], **extra})


def body(method: str, path: str, make: Callable[[World, str], dict[str, Any]]) -> Ask:
    return lambda caller, id_: caller.rest(method, path, id_, json=make(caller.world, id_))


def upload_remix(caller: Caller, id_: str) -> Answer:
    files = {"file": ("remix.mp4", small_video(), "video/mp4")}
    return caller.rest("POST", "/v1/videos", id_, files=files, data={"title": "remix", "remix_of": id_})


def sse(caller: Caller, id_: str) -> Answer:
    return sse_answer(caller.http, caller.server.url(f"/api/contents/{id_}/events"), id_, headers=caller.world.me.headers)


SUBSCRIBE_THEN_PING = [{"type": "subscribe"}, {"type": "ping"}]


def channel_socket(caller: Caller, id_: str) -> Answer:
    return caller.websocket(f"/api/contents/{id_}/ws", SUBSCRIBE_THEN_PING, id_)


def channel_socket_claiming(caller: Caller, id_: str) -> Answer:
    """My channel's socket, subscribing with `channel_id` set to the probed id."""
    channel = caller.world.me.channel.id
    return caller.websocket(
        f"/api/contents/{channel}/ws", [{"type": "subscribe", "channel_id": id_}, {"type": "ping"}], id_
    )


def their_channel_socket_as(caller: Caller, id_: str) -> Answer:
    """The other's channel's socket, subscribing as `user_id` the probed id (the
    channel's owner, or nobody): the server must ignore the claim."""
    channel = str(caller.world.other.channel.id)
    return caller.websocket(
        f"/api/contents/{channel}/ws",
        [{"type": "subscribe", "channel_id": channel, "user_id": id_}, {"type": "ping"}],
        id_,
    )


def own_socket_as(caller: Caller, id_: str) -> Answer:
    """WS /v1/ws subscribing as `user_id` the probed id, replaying from the start: the
    other's stream holds their job update and notification, which must not come. The
    id is not masked: my own stream names the other legitimately (their like)."""
    return caller.websocket("/v1/ws", [{"type": "subscribe", "user_id": id_, "since": 0}, {"type": "ping"}], None)


def remove_a_member(caller: Caller, id_: str) -> Answer:
    """Remove a member of the channel `id_`: my spare member from my channel, the
    other's member from any other."""
    world = caller.world
    member = world.spare_member.id if id_ == str(world.me.channel.id) else world.their_member.id
    return caller.rest("DELETE", f"/api/channels/{id_}/members/{member}", id_)


def their_member(world: World) -> Any:
    return world.their_member.id
