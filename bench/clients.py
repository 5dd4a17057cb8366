"""Load clients for the performance scenarios, in a process of their own (no Django):
`python -m bench.clients CONFIG_JSON`. Plain asyncio HTTP/1.1 over keep-alive
connections (counting every byte on the wire) and websockets for WebSocket.

Modes (config["mode"]):
- `poll`: `count` clients, each GETs `path` every `interval` s (random phase) for
  `seconds`, with If-None-Match when `conditional`; reports requests, bytes, statuses
  and, per client, when it first saw each X-Last-Event-ID.
- `sse`: `count` SSE streams of a channel for `seconds`; reports bytes and, per
  client, when each event id arrived.
- `hold`: open up to `count` idle `kind` (ws|sse, or ws-floor: the floor app's) subscriptions, `concurrency` at a
  time, for at most `connect_seconds`; report how many and how fast ("connected"),
  then hold them until stdin closes.

The last stdout line is {"phase": "report", ...}."""

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from typing import Any

from websockets.typing import Origin


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def request_bytes(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return int(lines[0].split()[1]), headers, len(head)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, int]:
    """status, headers, body, and the bytes read for it (head, body, chunk framing)."""
    status, headers, size = await read_head(reader)
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", size
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            line = await reader.readuntil(b"\r\n")
            length = int(line.strip(), 16)
            chunk = await reader.readexactly(length + 2)
            size += len(line) + len(chunk)
            if length == 0:
                return status, headers, body, size
            body += chunk[:-2]
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body, size + len(body)


async def stream_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):
    """The body of a streamed response, chunk by chunk, with the wire size of each."""
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    while True:
        if chunked:
            line = await reader.readuntil(b"\r\n")
            length = int(line.strip(), 16)
            data = await reader.readexactly(length + 2)
            if length == 0:
                return
            yield data[:-2], len(line) + len(data)
        else:
            data = await reader.read(65536)
            if not data:
                return
            yield data, len(data)


# --- poll -----------------------------------------------------------------------------


async def poll_client(i: int, config: dict[str, Any], deadline: float, totals: Counter, seen: list) -> None:
    port, interval = config["port"], config["interval"]
    headers = {"Authorization": f"Bearer {config['token']}", "Accept": "application/json"}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    etag, last, first_seen = None, config.get("start_seq", 0), {}
    latencies = []
    await asyncio.sleep(random.uniform(0, interval))
    next_at = time.monotonic()
    try:
        while next_at < deadline:
            sent_headers = dict(headers)
            if config.get("conditional") and etag:
                sent_headers["If-None-Match"] = etag
            request = request_bytes("GET", config["path"], port, sent_headers)
            started = time.monotonic()
            writer.write(request)
            status, answer, _, size = await read_response(reader)
            received = time.time()
            latencies.append(time.monotonic() - started)
            totals["requests"] += 1
            totals["bytes_out"] += len(request)
            totals["bytes_in"] += size
            totals[f"status_{status}"] += 1
            etag = answer.get("etag", etag)
            head = int(answer.get("x-last-event-id", "0") or 0)
            for seq in range(last + 1, head + 1):
                first_seen[seq] = received
            last = max(last, head)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        writer.close()
        seen.append({"first_seen": first_seen, "latencies": latencies})


# --- sse ------------------------------------------------------------------------------


async def sse_open(port: int, channel_id: str, token: str, last: int = 0):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    request = request_bytes("GET", f"/api/contents/{channel_id}/events", port, {
        "Authorization": f"Bearer {token}", "Accept": "text/event-stream", "Last-Event-ID": str(last)})
    writer.write(request)
    status, headers, size = await read_head(reader)
    if status != 200:
        writer.close()
        raise RuntimeError(f"SSE {status}")
    return reader, writer, headers, size + len(request)


async def sse_client(i: int, config: dict[str, Any], deadline: float, totals: Counter, seen: list) -> None:
    events: dict[int, float] = {}
    try:
        reader, writer, headers, size = await sse_open(config["port"], config["channel_id"], config["token"], config.get("start_seq", 0))
    except Exception as error:  # noqa: BLE001
        totals[f"error_{type(error).__name__}"] += 1
        seen.append({"events": events})
        return
    totals["bytes_in"] += size
    totals["connected"] += 1
    buffer = b""

    async def read() -> None:
        nonlocal buffer
        async for data, wire in stream_chunks(reader, headers):
            totals["bytes_in"] += wire
            buffer += data
            now = time.time()
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.startswith(b"id: "):
                    events.setdefault(int(line[4:]), now)

    try:
        await asyncio.wait_for(read(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        pass
    finally:
        writer.close()
        seen.append({"events": events})


async def timed_run(config: dict[str, Any], client) -> None:
    """With `mark`: once every client is connected say so, then wait for a line on stdin
    (the orchestrator's window starts) and report what came after it as well."""
    totals: Counter = Counter()
    seen: list = []
    started = time.monotonic()
    deadline = started + config["seconds"]
    marked: dict[str, Any] = {}

    async def mark() -> None:
        # Polled: the counts are bumped by many tasks, none of which knows it is the last.
        while totals["connected"] + sum(v for k, v in totals.items() if k.startswith("error_")) < config["count"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        say({"phase": "connected", "seconds": time.monotonic() - started, "totals": dict(totals)})
        await asyncio.to_thread(sys.stdin.readline)
        marked.update(t=time.monotonic(), totals=dict(totals))
        say({"phase": "mark"})
        await asyncio.sleep(config["window"])
        for task in tasks:
            task.cancel()

    tasks = [asyncio.create_task(client(i, config, deadline, totals, seen)) for i in range(config["count"])]
    marker = asyncio.create_task(mark()) if config.get("mark") else None
    await asyncio.gather(*tasks, return_exceptions=True)
    if marker:
        marker.cancel()
    end = time.monotonic()
    since_mark = ({k: v - marked["totals"].get(k, 0) for k, v in totals.items()} if marked else None)
    say({"phase": "report", "elapsed": end - started, "totals": dict(totals), "clients": seen,
         "since_mark": since_mark, "elapsed_since_mark": end - marked["t"] if marked else None})


# --- hold (capacity) ------------------------------------------------------------------


async def ticket(connection: list, port: int, token: str) -> str:
    """A realtime ticket over the worker's own keep-alive connection."""
    if not connection:
        connection.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = connection
    writer.write(request_bytes("POST", "/v1/realtime/tickets", port, {"Authorization": f"Bearer {token}"}))
    status, _, body, _ = await read_response(reader)
    if status != 201:
        raise RuntimeError(f"ticket {status}")
    return json.loads(body)["ticket"]


async def hold(config: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    port, kind, count = config["port"], config["kind"], config["count"]
    held: list[Any] = []
    errors: Counter = Counter()
    next_index = 0
    started = time.monotonic()
    deadline = started + config["connect_seconds"]
    connect_times: list[float] = []

    async def open_one(connection: list) -> None:
        t0 = time.monotonic()
        if kind == "ws-floor":
            # The floor: a minimal Channels consumer on the same server (bench.reconnect_storm.floor_application),
            # no ticket, no authentication, no hub: the handshake and one message each way.
            ws = await connect(f"ws://127.0.0.1:{port}/floor", origin=Origin(f"http://127.0.0.1:{port}"), open_timeout=30,
                               max_queue=None, ping_interval=None)
            await ws.send(json.dumps({"type": "subscribe", "channel_id": config["channel_id"]}))
            while json.loads(await asyncio.wait_for(ws.recv(), 30)).get("type") != "subscribed":
                pass
            held.append(ws)
        elif kind == "sse":
            reader, writer, headers, _ = await sse_open(port, config["channel_id"], config["token"])
            buffer = b""
            async for data, _ in stream_chunks(reader, headers):
                buffer += data
                if b": connected" in buffer:
                    break
            held.append(writer)
        else:
            t = await ticket(connection, port, config["token"])
            ws = await connect(f"ws://127.0.0.1:{port}/api/contents/{config['channel_id']}/ws?ticket={t}",
                               origin=Origin(f"http://127.0.0.1:{port}"), open_timeout=30, max_queue=None, ping_interval=None)
            await ws.send(json.dumps({"type": "subscribe", "channel_id": config["channel_id"]}))
            while json.loads(await asyncio.wait_for(ws.recv(), 30)).get("type") != "subscribed":
                pass
            held.append(ws)
        connect_times.append(time.monotonic() - t0)

    async def worker() -> None:
        nonlocal next_index
        connection: list = []
        while next_index < count and time.monotonic() < deadline:
            next_index += 1
            try:
                await asyncio.wait_for(open_one(connection), max(0.1, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - counted, and the worker goes on
                errors[type(error).__name__] += 1
                if connection:
                    connection[1].close()
                    connection.clear()
                if len(errors) and sum(errors.values()) > max(50, count // 10):
                    return  # the server refuses: stop at this bound
        if connection:
            connection[1].close()

    async def progress() -> None:
        while True:
            await asyncio.sleep(5)
            print(f"{time.strftime('%H:%M:%S')} {kind} held {len(held)} errors {dict(errors)}", file=sys.stderr, flush=True)

    reporter = asyncio.create_task(progress())
    await asyncio.gather(*(worker() for _ in range(config["concurrency"])))
    reporter.cancel()
    elapsed = time.monotonic() - started
    ordered = sorted(connect_times)
    say({"phase": "connected", "held": len(held), "seconds": elapsed, "errors": dict(errors),
         "connect_p50_ms": ordered[len(ordered) // 2] * 1000 if ordered else None,
         "connect_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000 if ordered else None,
         "stopped_by": "count" if next_index >= count else "time"})
    await asyncio.to_thread(sys.stdin.read)  # hold until the orchestrator closes stdin
    alive = sum(1 for h in held if (getattr(h, "state", None) is None and not h.is_closing())
                or getattr(getattr(h, "state", None), "name", "") == "OPEN")
    say({"phase": "report", "held": len(held), "alive_at_end": alive, "errors": dict(errors)})
    sys.stdout.flush()
    import os

    os._exit(0)  # thousands of sockets: the kernel closes them faster than a polite close


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = json.loads(sys.argv[1])
    mode = config["mode"]
    if mode == "poll":
        asyncio.run(timed_run(config, poll_client))
    elif mode == "sse":
        asyncio.run(timed_run(config, sse_client))
    elif mode == "hold":
        asyncio.run(hold(config))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
