"""Commit to the last of 1,000 subscribers, SSE and WebSocket side by side (issue 20:
SSE p99 <= 50 ms at 1,000 subscribers, the WebSocket's latency), through one granian
worker as `make run` ships it, with the floor measured in the same run: the same
server and the same clients, 1,000 SSE streams of a bare ASGI app (no framework, no
hub, no channel layer) that writes one pre-encoded frame to each when told to
(`floor_application`). Each event is committed alone (a content moved through its
stages by bench.reconnect_storm's Committer) and timed from its COMMIT until the last
subscriber has it; the clients run in processes of their own."""

import asyncio
import os
import time
from typing import Any

from bench import harness
from bench.reconnect_storm import ClientGroup, Committer, bench_setup, percentile, raise_fd_limit

SUBSCRIBERS = int(os.environ.get("BENCH_LATENCY_SUBSCRIBERS", "1000"))
# Clients per process: a client reads every frame of its stream in Python, so 1,000 in
# one process time the clients more than the server.
PER_PROCESS = int(os.environ.get("BENCH_LATENCY_PER_PROCESS", "250"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "30"))
# Issue 20's "now" column (measured before this work).
KINDS = os.environ.get("BENCH_LATENCY_KINDS", "floor,sse,ws").split(",")
NOW = {"sse": "p50 47-49, p99 90-99", "ws": "p99 46-50", "floor": "websockets on uvloop p99 25-34"}


# --- the floor: a bare ASGI fan-out on the same server ----------------------------------

_streams: list[asyncio.Queue[bytes]] = []


async def floor_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET any path: an SSE stream (": connected", then the frames it is given). POST
    /fire?id=N: the frame of event N, encoded once, written to every stream."""
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        seq = int(dict(part.split("=") for part in scope["query_string"].decode().split("&"))["id"])
        frame = f'id: {seq}\ndata: {{"type":"content_status_update","content_id":"floor","version":{seq}}}\n\n'.encode()
        for stream in _streams:
            stream.put_nowait(frame)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    _streams.append(queue)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        queue.put_nowait(b"")  # the stream's end

    watch = asyncio.ensure_future(disconnected())
    try:
        # One wait per frame, on the stream's queue alone.
        while frame := await queue.get():
            await send({"type": "http.response.body", "body": frame, "more_body": True})
    finally:
        watch.cancel()
        _streams.remove(queue)


def one_kind(kind: str, database_url: str, channel: Any, user: Any, token: str) -> dict[str, Any]:
    import httpx

    servers = harness.Servers(1, database_url, f"latency-{kind}")
    if kind == "floor":
        for server in servers.daphnes:
            server.app = "bench.realtime_latency:floor_application"
    servers.start()
    clients = None
    try:
        clients = ClientGroup(ports=servers.ports, channel_id=str(channel.id), token=token, count=SUBSCRIBERS,
                              workdir=servers.workdir, kind="ws" if kind == "ws" else "sse", per_process=PER_PROCESS)
        live = clients.ask("wait_live", timeout=120)
        if live["live"] < SUBSCRIBERS:
            clients.ask("drop_offline", timeout=10)
        time.sleep(1)
        committer = Committer(channel, user)
        to_last = []
        for seq in range(1, EVENTS + 1):
            if kind == "floor":
                started = time.time()
                httpx.post(f"http://127.0.0.1:{servers.ports[0]}/fire", params={"id": seq}, timeout=10)
                last = seq
            else:
                last = committer.commit()
                started = committer.commit_times[last]
            current = clients.ask("wait_current", last=last, timeout=20)
            if current["current"] >= live["live"]:
                to_last.append(current["t"] - started)
            time.sleep(0.2)
        cpu = servers.cpu()
    finally:
        if clients is not None:
            clients.close()
        servers.stop()
    return {"kind": kind, "live": live["live"], "events": len(to_last), "cpu_s": cpu, "each_ms": [t * 1000 for t in to_last],
            "p50_ms": percentile(to_last, 50) * 1000, "p99_ms": percentile(to_last, 99) * 1000,
            "max_ms": max(to_last, default=float("nan")) * 1000}


def main() -> dict[str, Any]:
    raise_fd_limit()
    rows = []
    with harness.bench_db() as database_url:
        for kind in KINDS:
            # A channel of its own per kind: each starts its ids at 1.
            user, token, channel = bench_setup(f"latency-{kind}")
            rows.append(one_kind(kind, database_url, channel, user, token))
    floor = rows[0] if rows[0]["kind"] == "floor" else {"p99_ms": float("nan")}
    print(f"realtime_latency: commit -> the last of {SUBSCRIBERS:,} subscribers, {EVENTS} events one at a time, "
          f"one {harness.WEB_SERVER} worker (clients {PER_PROCESS:,} per process); issue 20's goal SSE p99 <= 50 ms")
    names = {"floor": "floor: bare ASGI SSE fan-out", "sse": "SSE", "ws": "WebSocket"}
    harness.print_table(
        ["subscribers", "live", "events", "p50 ms", "p99 ms", "max ms", "p99 of floor", "issue 20's now (ms)"],
        [[names[r["kind"]], r["live"], r["events"], r["p50_ms"], r["p99_ms"], r["max_ms"],
          harness.ratio(r["p99_ms"], floor["p99_ms"]), NOW[r["kind"]]] for r in rows])
    for r in rows:
        print(f"  {names[r['kind']]}, each event in commit order (ms): " + " ".join(f"{ms:.0f}" for ms in r["each_ms"]))
    return {"rows": rows}
