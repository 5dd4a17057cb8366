"""Capacity: idle WebSockets, then idle SSE streams, held by ONE server process
(production mode), each authenticated as a browser would (WebSocket: a ticket from
POST /v1/realtime/tickets, then the handshake and the subscribe; SSE: a bearer token),
opened by two client processes (bench.clients) `concurrency` at a time.

Reported per kind: how many the process held (aim: BENCH_CAPACITY_WS, default 10,000;
stopped at that bound, at the connect budget, or when the server refuses), connects/s,
connect p50/p99, the process's RSS and memory per connection, /healthz latency while
holding them, and how many were still open when let go. Baseline: the first 100
connections (rate and memory per connection)."""

import os
import time
from typing import Any

import httpx

from bench import harness
from bench.reconnect_storm import Committer, bench_setup, raise_fd_limit

TARGETS = {"ws": int(os.environ.get("BENCH_CAPACITY_WS", "10000")), "sse": int(os.environ.get("BENCH_CAPACITY_SSE", "5000"))}
BUDGET = {"ws": float(os.environ.get("BENCH_CAPACITY_WS_SECONDS", "40")), "sse": float(os.environ.get("BENCH_CAPACITY_SSE_SECONDS", "15"))}
# Connects in flight per client process: two of them stay under daphne's listen backlog
# (twisted's default, 50); past it the kernel drops SYNs and a connect waits 1-3 s more.
CONCURRENCY = int(os.environ.get("BENCH_CAPACITY_CONCURRENCY", "24"))
PROCESSES = 2
BASELINE = 100


def healthz_ms(port: int, n: int = 10) -> float:
    times = []
    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            t = time.perf_counter()
            http.get(f"http://127.0.0.1:{port}/healthz")
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1000


def open_batch(kind: str, port: int, channel_id: str, token: str, count: int, seconds: float, processes: int) -> tuple[list, dict]:
    config = {"mode": "hold", "kind": kind, "port": port, "channel_id": channel_id, "token": token,
              "concurrency": CONCURRENCY, "connect_seconds": seconds}
    share = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    clients = [harness.LoadClients({**config, "count": n}) for n in share if n]
    answers = [c.wait("connected", seconds + 120) for c in clients]
    return clients, {"held": sum(a["held"] for a in answers), "seconds": max(a["seconds"] for a in answers),
                     "errors": {k: v for a in answers for k, v in a["errors"].items()},
                     "p50": max(a["connect_p50_ms"] or 0 for a in answers), "p99": max(a["connect_p99_ms"] or 0 for a in answers),
                     "stopped_by": ",".join(sorted({a["stopped_by"] for a in answers}))}


def run_kind(kind: str, database_url: str) -> dict[str, Any]:
    user, token, channel = bench_setup(f"capacity-{kind}")
    committer = Committer(channel, user)
    servers = harness.Servers(1, database_url, f"capacity-{kind}")
    held: list[harness.LoadClients] = []
    try:
        servers.start()
        port = servers.ports[0]
        healthz_ms(port, 3)
        idle_rss = servers.rss_kib()
        idle_health = healthz_ms(port)
        first, base = open_batch(kind, port, str(channel.id), token, BASELINE, 30, 1)
        held += first
        time.sleep(1)
        base_rss = servers.rss_kib()
        rest, bulk = open_batch(kind, port, str(channel.id), token, TARGETS[kind] - BASELINE, BUDGET[kind], PROCESSES)
        held += rest
        time.sleep(2)
        total = base["held"] + bulk["held"]
        rss = servers.rss_kib()
        health = healthz_ms(port)
        cpu = servers.cpu()
        reports = [c.finish() for c in held]
        alive = sum(r["alive_at_end"] for r in reports)
    finally:
        for c in held:
            c.kill()
        servers.stop()
        committer.cleanup()
    return {"kind": "WebSocket" if kind == "ws" else "SSE", "target": TARGETS[kind], "held": total, "alive_at_end": alive,
            "baseline_rate": base["held"] / base["seconds"], "rate": bulk["held"] / bulk["seconds"] if bulk["seconds"] else 0,
            "connect_p50_ms": bulk["p50"], "connect_p99_ms": bulk["p99"], "errors": {**base["errors"], **bulk["errors"]},
            "stopped_by": bulk["stopped_by"], "idle_rss_mib": idle_rss / 1024, "rss_mib": rss / 1024,
            "baseline_kib_per_conn": (base_rss - idle_rss) / max(base["held"], 1),
            "kib_per_conn": (rss - idle_rss) / max(total, 1), "healthz_idle_ms": idle_health, "healthz_ms": health,
            "cpu_s": cpu}


def main() -> dict[str, Any]:
    raise_fd_limit()
    with harness.bench_db() as database_url:
        rows = [run_kind(kind, database_url) for kind in ("ws", "sse")]
    print(f"capacity: idle subscriptions held by ONE {harness.WEB_SERVER} worker process (production mode), authenticated, opened "
          f"{CONCURRENCY * PROCESSES} at a time by {PROCESSES} client processes; baseline: the first {BASELINE}")
    harness.print_table(
        ["kind", "target", "held", "alive at end", "connects/s", "ratio", "connect p50 ms", "p99 ms", "RSS MiB (idle)",
         "KiB/conn", "ratio", "healthz ms (idle)", "stopped by"],
        [[r["kind"], r["target"], r["held"], r["alive_at_end"], r["rate"], harness.ratio(r["rate"], r["baseline_rate"]),
          r["connect_p50_ms"], r["connect_p99_ms"], f"{r['rss_mib']:.0f} ({r['idle_rss_mib']:.0f})", r["kib_per_conn"],
          harness.ratio(r["kib_per_conn"], r["baseline_kib_per_conn"]), f"{r['healthz_ms']:.1f} ({r['healthz_idle_ms']:.1f})",
          r["stopped_by"]] for r in rows])
    for r in rows:
        if r["errors"]:
            print(f"  {r['kind']} connect errors: {r['errors']}")
    return {"rows": rows}
