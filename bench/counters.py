"""Views and likes per second on one hot video, sustained against a real daphne, and
the exact totals afterwards. Baseline: a no-op call (an empty batch-metadata, which
parses, authenticates and throttles like the others and reads nothing), anonymous and
with a bearer token, measured in the same run.

Scenarios, each for BENCH_COUNTERS_SECONDS over BENCH_COUNTERS_CONNECTIONS keep-alive
connections:
- `views`: every request a new anonymous viewer (its own User-Agent), so every one is
  counted; the view-count flush runs every VIEW_FLUSH_SECONDS meanwhile, as the cron
  would. Checked: batch-metadata right after the load, before the last flush, and the
  row after it, both equal to the 204s the clients received.
- `views (one viewer)`: the same viewer again and again: counted once.
- `likes`: each connection owns 2 users and likes, then unlikes, with each in turn;
  checked: like_count equals the Like rows and the state the clients last set.
- without HTTP: views per second on one video through the row (the database path) and
  through the Redis script, from 16 threads of the orchestrator.

The clients run in a process of their own (`python -m bench.counters --clients
CONFIG`, no Django): an asyncio HTTP/1.1 client that counts every answer and stops only
after the answer to its last request, so the totals can be compared exactly."""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_COUNTERS_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_COUNTERS_CONNECTIONS", "32"))
USERS_PER_CONNECTION = 2
# Distinct viewers for the hot-view load: more than it sends in BENCH_COUNTERS_SECONDS
# (a viewer reused later in the run is a repeat, acknowledged but not counted again).
VIEWERS = int(os.environ.get("BENCH_COUNTERS_VIEWERS", "8000"))


def new_users_with_tokens(prefix: str, count: int) -> list[str]:
    """`count` new users with a bearer token each, inserted in bulk (knox's own create
    hashes and saves one token at a time)."""
    from django.contrib.auth import get_user_model
    from knox import crypto
    from knox.models import AuthToken
    from knox.settings import CONSTANTS

    user_model = get_user_model()
    users = user_model.objects.bulk_create([user_model(username=f"{prefix}-{i}") for i in range(count)])
    tokens = [crypto.create_token_string() for _ in users]
    AuthToken.objects.bulk_create([
        AuthToken(user=user, token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH], digest=crypto.hash_token(token), expiry=None)
        for user, token in zip(users, tokens, strict=True)
    ])
    return tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


# --- client half (its own process, no Django) --------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]
    return status, await reader.readexactly(int(headers.get("content-length", "0")))


def request_bytes(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_connection(index: int, config: dict[str, Any], deadline: float, result: dict[str, Any]) -> None:
    port, kind = config["port"], config["kind"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    users = config.get("tokens", [])[index * USERS_PER_CONNECTION : (index + 1) * USERS_PER_CONNECTION]
    n = 0
    try:
        while time.monotonic() < deadline:
            json_headers = {"Content-Type": "application/json"}
            if kind == "noop":
                headers = {**json_headers, **({"Authorization": f"Bearer {config['token']}"} if config.get("token") else {})}
                request = request_bytes("POST", "/v1/videos/batch-metadata", port, headers, b'{"video_ids": []}')
            elif kind == "views" and config["distinct"]:
                # Each view by a user who has not viewed it yet (one viewer counts once per
                # VIEW_DEDUP_SECONDS; an anonymous one is its address, the same here for all).
                viewers = config["viewers"]
                viewer = (index * (len(viewers) // config["connections"]) + n) % len(viewers)
                request = request_bytes(
                    "POST", f"/v1/videos/{config['video_id']}/view", port, {"Authorization": f"Bearer {viewers[viewer]}"}
                )
            elif kind == "views":
                request = request_bytes("POST", f"/v1/videos/{config['video_id']}/view", port, {"User-Agent": "bench-one-viewer"})
            else:  # likes
                user = n % len(users)
                method = "POST" if (n // len(users)) % 2 == 0 else "DELETE"
                request = request_bytes(method, f"/v1/videos/{config['video_id']}/like", port, {"Authorization": f"Bearer {users[user]}"})
            started = time.monotonic()
            writer.write(request)
            status, body = await read_response(reader)
            result["latencies"].append(time.monotonic() - started)
            result["statuses"][status] += 1
            if kind == "likes" and status == 200:
                result["liked"][users[user]] = json.loads(body)["liked"]
            if kind == "views" and config["distinct"] and status == 204:
                result["viewers"].add(viewer)
            n += 1
    finally:
        writer.close()


async def run_clients(config: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"latencies": [], "statuses": Counter(), "liked": {}, "viewers": set()}
    started = time.monotonic()
    deadline = started + config["seconds"]
    await asyncio.gather(*(run_connection(i, config, deadline, result) for i in range(config["connections"])))
    elapsed = time.monotonic() - started  # until the answer to the last request
    latencies = result["latencies"]
    return {
        "elapsed": elapsed, "statuses": dict(result["statuses"]), "liked": result["liked"], "viewers": len(result["viewers"]),
        "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.mean(latencies) * 1000 if latencies else float("nan"),
    }


def clients_main(config_json: str) -> None:
    print(json.dumps(asyncio.run(run_clients(json.loads(config_json)))))


# --- orchestrator ------------------------------------------------------------------


def run_load(name: str, config: dict[str, Any]) -> dict[str, Any]:
    config = {"seconds": SECONDS, "connections": CONNECTIONS, **config}
    out = subprocess.run(
        # On stdin: the viewers' tokens are more than one argument may hold (128 KiB).
        [sys.executable, "-m", "bench.counters", "--clients", "-"], input=json.dumps(config),
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120, check=True,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    report["name"] = name
    report["ok"] = sum(v for k, v in report["statuses"].items() if 200 <= int(k) < 300)
    report["per_second"] = report["ok"] / report["elapsed"]
    return report


def hot_row_vs_redis(video: Any, threads: int = 16, seconds: float = 3.0) -> tuple[float, float]:
    """Without HTTP: views per second on one video through the database path (a View
    row and an UPDATE of the hot row per view, what every view did before) and through
    the Redis record script, from `threads` threads of this process."""
    from django.db import connection, transaction
    from django.db.models import F

    from videos import counters
    from videos.models import Video, View

    def database_view(n: int) -> None:
        with transaction.atomic():
            View.objects.create(video_id=video.id)
            Video.objects.filter(id=video.id).update(view_count=F("view_count") + 1)

    def redis_view(n: int) -> None:
        counters.view_record(video_id=video.id, viewer=f"bench:{threading.get_ident()}:{n}")

    rates = []
    for view in (database_view, redis_view):
        done = [0] * threads
        deadline = time.monotonic() + seconds

        def loop(i: int) -> None:
            try:
                while time.monotonic() < deadline:
                    view(done[i])
                    done[i] += 1
            finally:
                connection.close()

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        rates.append(sum(done) / seconds)
    return rates[0], rates[1]


def make_video(owner: Any, title: str) -> Any:
    from videos.models import Video

    return Video.objects.create(
        owner=owner, title=title, file="videos/bench.mp4", duration_seconds=1, width=1, height=1, codec="h264", size_bytes=1
    )


def main() -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from bench.reconnect_storm import bench_database
    from videos.models import Like, Video
    from videos.selectors import video_metadata
    from videos.services import video_views_flush

    with bench_database("aistatus_bench_counters") as database_url:
        stamp = f"{os.getpid()}-{int(time.time())}"
        User = get_user_model()
        owner = User.objects.create(username=f"bench-counters-{stamp}")
        _, owner_token = AuthToken.objects.create(user=owner)
        likers = [User(username=f"bench-liker-{stamp}-{i}") for i in range(CONNECTIONS * USERS_PER_CONNECTION)]
        User.objects.bulk_create(likers)
        tokens = [AuthToken.objects.create(user=u)[1] for u in likers]
        viewer_tokens = new_users_with_tokens(f"bench-viewer-{stamp}", VIEWERS)
        hot, repeated, liked, direct = (make_video(owner, t) for t in ("hot views", "one viewer", "hot likes", "direct"))
        video_views_flush()  # nothing of an earlier run left in Redis

        port = free_port()
        log_path = Path(tempfile.mkstemp(prefix="bench-counters-daphne-", suffix=".log")[1])
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "false", "THROTTLE_ANON": "100000000/min", "THROTTLE_USER": "100000000/min"}
        with log_path.open("ab") as log:
            daphne = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                cwd=ROOT, env=env, stdout=log, stderr=log,
            )
        stop_flushing = threading.Event()
        try:
            import httpx

            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            run_load("warm-up", {"port": port, "kind": "noop", "seconds": 2})

            reports = [
                run_load("no-op, anonymous", {"port": port, "kind": "noop"}),
                run_load("no-op, bearer token", {"port": port, "kind": "noop", "token": owner_token}),
            ]

            def flush_periodically() -> None:
                from django.db import connection

                try:
                    while not stop_flushing.wait(settings.VIEW_FLUSH_SECONDS):
                        video_views_flush()
                finally:
                    connection.close()

            flusher = threading.Thread(target=flush_periodically)
            flusher.start()
            views = run_load("views (new viewers, token)",
                             {"port": port, "kind": "views", "video_id": str(hot.id), "distinct": True, "viewers": viewer_tokens})
            stop_flushing.set()
            flusher.join()
            shown_before_flush = video_metadata(video_ids=[hot.id])[str(hot.id)]["view_count"]
            row_before_flush = Video.objects.get(id=hot.id).view_count
            video_views_flush()
            row_after_flush = Video.objects.get(id=hot.id).view_count
            reports.append(views)

            repeat = run_load("views (one viewer)", {"port": port, "kind": "views", "video_id": str(repeated.id), "distinct": False})
            video_views_flush()
            reports.append(repeat)

            likes = run_load("likes/unlikes (token)", {"port": port, "kind": "likes", "video_id": str(liked.id), "tokens": tokens})
            reports.append(likes)
        finally:
            stop_flushing.set()
            daphne.terminate()
            daphne.wait(10)

        database_rate, redis_rate = hot_row_vs_redis(direct)
        video_views_flush()
        noop_anon, noop_auth = reports[0]["per_second"], reports[1]["per_second"]
        print(f"counters: one hot video, {CONNECTIONS} keep-alive connections, {SECONDS:.0f} s each, one daphne process (DEBUG off)")
        for report in reports:
            base = noop_auth if "token" in report["name"] else noop_anon
            errors = {k: v for k, v in report["statuses"].items() if not 200 <= int(k) < 300}
            print(
                f"  {report['name']:<28} {report['per_second']:8.0f}/s  p50 {report['p50_ms']:6.1f} ms  p99 {report['p99_ms']:6.1f} ms"
                f"  {report['ok']:7d} ok  errors {errors or 0}  ratio to no-op {report['per_second'] / base:4.2f}x"
            )
        print(f"  without HTTP, 16 threads: a view through the hot row {database_rate:8.0f}/s, through Redis {redis_rate:8.0f}/s"
              f"  ({redis_rate / database_rate:4.1f}x)")
        liked_now = Video.objects.get(id=liked.id).like_count
        like_rows = Like.objects.filter(video=liked).count()
        expected_likes = sum(1 for state in likes["liked"].values() if state)
        repeated_count = Video.objects.get(id=repeated.id).view_count
        print("  exact totals:")
        print(f"    views acknowledged {views['ok']} from {views['viewers']} distinct viewers; batch-metadata before the"
              f" last flush {shown_before_flush} (row then {row_before_flush}); row after it {row_after_flush}"
              f"  {'OK' if views['viewers'] == shown_before_flush == row_after_flush else 'MISMATCH'}")
        print(f"    one viewer: {repeat['ok']} views acknowledged, counted {repeated_count}  {'OK' if repeated_count == 1 else 'MISMATCH'}")
        print(f"    likes: like_count {liked_now}, Like rows {like_rows}, liked as the clients last left it {expected_likes}"
              f"  {'OK' if liked_now == like_rows == expected_likes else 'MISMATCH'}")
        print(f"  daphne log: {log_path}")
        return {
            **{report["name"]: round(report["per_second"], 1) for report in reports},
            "hot_row_views_per_second": round(database_rate, 1), "redis_views_per_second": round(redis_rate, 1),
            "exact": views["viewers"] == shown_before_flush == row_after_flush and repeated_count == 1
            and liked_now == like_rows == expected_likes,
        }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--clients":
        clients_main(sys.stdin.read() if sys.argv[2] == "-" else sys.argv[2])
