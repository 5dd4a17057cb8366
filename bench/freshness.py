"""Freshness: from the commit of a change to the moment a client knows of it, for a
client polling the status every 3 s (conditional, as the seed polls), one on SSE and
one on WebSocket, all watching the same channel on one daphne (production mode)
while events are committed at random moments.

Baseline: the 3 s poll (the seed's way); the ratio says how much sooner a pushed
client knows. Pollers are bench.clients; the SSE and WebSocket subscribers are the
reconnect storm's client process."""

import os
import random
import time
from typing import Any

from bench import harness
from bench.reconnect_storm import ClientProcess, Committer, bench_setup, percentile

POLLERS = int(os.environ.get("BENCH_FRESH_POLLERS", "50"))
SUBSCRIBERS = int(os.environ.get("BENCH_FRESH_SUBSCRIBERS", "100"))  # half SSE, half WebSocket
EVENTS = int(os.environ.get("BENCH_FRESH_EVENTS", "12"))
INTERVAL = 3.0


def main() -> dict[str, Any]:
    with harness.bench_db() as database_url:
        user, token, channel = bench_setup("fresh")
        harness.copy_contents(channel, user, 25)
        committer = Committer(channel, user)
        servers = harness.Servers(1, database_url, "fresh")
        with servers:
            port = servers.ports[0]
            subscribers = ClientProcess(ports=[port], channel_id=str(channel.id), token=token, count=SUBSCRIBERS,
                                        log_path=servers.workdir / "subscribers.log", ramp_seconds=0.005)
            try:
                live = subscribers.ask("wait_live", timeout=60)
                seconds = EVENTS * 1.0 + INTERVAL + 2
                pollers = harness.LoadClients({
                    "mode": "poll", "port": port, "token": token, "count": POLLERS, "seconds": seconds,
                    "interval": INTERVAL, "path": f"/api/contents/{channel.id}/status", "conditional": True,
                    "start_seq": committer.last})
                time.sleep(INTERVAL + 0.5)  # every poller has its first answer
                for _ in range(EVENTS):
                    committer.commit()
                    time.sleep(random.uniform(0.5, 1.5))
                subscribers.ask("wait_current", last=committer.last, timeout=30)
                polled = pollers.wait("report", seconds + 60)
                pushed = subscribers.ask("report", timeout=60)["subscribers"]
            finally:
                subscribers.close()
        committer.cleanup()

    commits = committer.commit_times
    latencies: dict[str, list[float]] = {"poll 3 s (conditional status)": [], "SSE": [], "WebSocket": []}
    for client in polled["clients"]:
        for seq, t in client["first_seen"].items():
            if int(seq) in commits:
                latencies["poll 3 s (conditional status)"].append(t - commits[int(seq)])
    for sub in pushed:
        name = "SSE" if sub["kind"] == "sse" else "WebSocket"
        for seq, _, _, t in sub["events"]:
            if seq in commits:
                latencies[name].append(t - commits[seq])
    rows = {name: {"n": len(v), "p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000,
                   "max_ms": max(v, default=float("nan")) * 1000} for name, v in latencies.items()}
    base = rows["poll 3 s (conditional status)"]
    print(f"freshness: commit -> client knows, {EVENTS} events at random moments; {POLLERS} pollers, "
          f"{SUBSCRIBERS // 2} SSE + {SUBSCRIBERS - SUBSCRIBERS // 2} WebSocket subscribers ({live['live']} live), one {harness.WEB_SERVER} process")
    harness.print_table(["client", "deliveries", "p50 ms", "p99 ms", "max ms", "p50 sooner than poll", "p99 sooner"],
                        [[name, r["n"], r["p50_ms"], r["p99_ms"], r["max_ms"], harness.ratio(base["p50_ms"], r["p50_ms"]),
                          harness.ratio(base["p99_ms"], r["p99_ms"])] for name, r in rows.items()])
    return {"rows": rows}
