"""Time from commit to receipt of an event, on SSE and on WebSocket, through a real
daphne process. Baseline: the bare channel-layer round trip (group_send -> receive
in one process), measured in the same run; the ratio is what daphne, the consumer
and the framing add."""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from channels.layers import get_channel_layer
from django.db import transaction
from websockets.sync.client import connect
from websockets.typing import Origin

from contents.models import Channel
from contents.services import channel_create
from realtime.credentials import token_credential
from realtime.models import Event, Stream
from realtime.streams import channel_stream, publish
from realtime.tickets import ticket_issue

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("BENCH_EVENTS", "300"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def layer_baseline(count: int) -> list[float]:
    async def run() -> list[float]:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS names no layer"
        channel = await layer.new_channel()
        await layer.group_add("bench.baseline", channel)
        latencies = []
        for i in range(count):
            sent = time.time()
            await layer.group_send("bench.baseline", {"type": "bench", "i": i})
            await layer.receive(channel)
            latencies.append(time.time() - sent)
        await layer.group_discard("bench.baseline", channel)
        return latencies

    return asyncio.run(run())


def main() -> None:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    user, _ = get_user_model().objects.get_or_create(username="bench-realtime")
    # A ticket names the credential that issued it, and opens a stream while that holds.
    credential = token_credential(AuthToken.objects.create(user=user)[0])
    channel = channel_create(owner=user, name="bench")
    stream = channel_stream(channel.id)
    port = free_port()
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    received: dict[str, dict[int, float]] = {"sse": {}, "ws": {}}
    ready = {"sse": threading.Event(), "ws": threading.Event()}
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        def read_sse() -> None:
            ticket, _ = ticket_issue(user_id=user.id, credential=credential)
            url = f"http://127.0.0.1:{port}/api/contents/{channel.id}/events"
            with httpx.stream("GET", url, params={"ticket": ticket}, timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        ready["sse"].set()
                    elif line.startswith("id: "):
                        seq = int(line[4:])
                        received["sse"][seq] = time.time()
                        if len(received["sse"]) >= EVENTS:
                            return

        def read_ws() -> None:
            ticket, _ = ticket_issue(user_id=user.id, credential=credential)
            url = f"ws://127.0.0.1:{port}/api/contents/{channel.id}/ws?ticket={ticket}"
            with connect(url, origin=Origin(f"http://127.0.0.1:{port}")) as ws:
                ws.send(json.dumps({"type": "subscribe", "channel_id": str(channel.id)}))
                while len(received["ws"]) < EVENTS:
                    message = json.loads(ws.recv(timeout=60))
                    if message["type"] == "subscribed":
                        ready["ws"].set()
                    elif "id" in message:
                        received["ws"][message["id"]] = time.time()

        readers = [threading.Thread(target=read_sse), threading.Thread(target=read_ws)]
        for reader in readers:
            reader.start()
        for flag in ready.values():
            flag.wait(30)
        time.sleep(0.5)

        committed: dict[int, float] = {}
        for i in range(EVENTS):
            stamp: list[float] = []
            with transaction.atomic():
                # Registered before publish()'s own hook, so it runs first, right after COMMIT.
                def at_commit(stamp: list[float] = stamp) -> None:
                    stamp.append(time.time())

                transaction.on_commit(at_commit)
                event = publish(stream, "content_status_update", {"content_id": str(channel.id), "version": i})
            committed[event.seq] = stamp[0]
            time.sleep(0.005)
        for reader in readers:
            reader.join(60)

        baseline = layer_baseline(EVENTS)
        base_p50, base_p99 = percentile(baseline, 50) * 1000, percentile(baseline, 99) * 1000
        print(f"realtime_latency: {EVENTS} events, commit -> receipt (ms)")
        print(f"  channel layer baseline   p50 {base_p50:7.2f}  p99 {base_p99:7.2f}")
        for name in ("sse", "ws"):
            latencies = [(received[name][seq] - committed[seq]) for seq in committed if seq in received[name]]
            p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
            print(
                f"  {name:<24} p50 {p50:7.2f}  p99 {p99:7.2f}  received {len(latencies)}/{EVENTS}"
                f"  ratio to baseline p50 {p50 / base_p50:5.1f}x  p99 {p99 / base_p99:5.1f}x"
            )
            print(f"  {'':<24} mean {statistics.mean(latencies) * 1000:6.2f}")
    finally:
        daphne.terminate()
        daphne.wait(10)
        Event.objects.filter(stream=stream).delete()
        Stream.objects.filter(name=stream).delete()
        Channel.objects.filter(id=channel.id).delete()
