"""A soak: 200 subscribers (SSE and WebSocket, half each) of one channel over two
daphne processes with production timing, idle most of the time while a content
event is committed every 2-4 s, for 5 minutes (BENCH_SOAK_SECONDS shortens it).

Reported: every event to every client (committed vs received, lost, duplicates by
id and by content version, reconnects: an idle stream must not die), commit-to-receipt
latency, and the RSS of each daphne sampled over the run. Memory is flat when the
last sample is within 15% of the first one after warm-up. Baseline: the early
sample, against which the end is compared; and the first event's latency against
the run's.

It reuses the reconnect storm's halves: its client process, daphnes, own database
(aistatus_bench_soak) and committer."""

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.reconnect_storm import (
    ClientProcess,
    Committer,
    Daphne,
    analyse,
    bench_database,
    bench_setup,
    db_stats,
    free_port,
    percentile,
    print_delivery_table,
    print_log_problems,
    quiet_http_logs,
    raise_fd_limit,
    rss_kib,
    stats_delta,
    write_per_client,
)

SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "300"))
SUBSCRIBERS = int(os.environ.get("BENCH_SOAK_SUBSCRIBERS", "200"))
# Within this of the early sample, memory counts as flat.
FLAT_TOLERANCE = 0.15


def main() -> None:
    raise_fd_limit()
    quiet_http_logs()
    database = "aistatus_bench_soak"
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    sample_every = max(5.0, SECONDS / 30)
    warm_up = min(60.0, SECONDS / 5)
    with bench_database(database) as database_url:
        user, token, channel = bench_setup("soak")
        committer = Committer(channel, user)
        servers = [Daphne(port=free_port(), database_url=database_url, log_path=workdir / f"daphne-{i}.log") for i in (1, 2)]
        clients = None
        samples: list[tuple[float, int, int, int, int]] = []
        try:
            for server in servers:
                server.spawn()
            for server in servers:
                server.wait_ready()
            clients = ClientProcess(ports=[s.port for s in servers], channel_id=str(channel.id), token=token,
                                    count=SUBSCRIBERS, log_path=workdir / "clients.log")
            live = clients.ask("wait_live", timeout=60)
            if live["live"] < SUBSCRIBERS:
                raise RuntimeError(f"only {live['live']} of {SUBSCRIBERS} subscribers connected; see {workdir}")

            pids = [server.process.pid for server in servers if server.process is not None]  # both spawned above

            def sample(elapsed: float) -> None:
                samples.append((elapsed, rss_kib(pids[0]), rss_kib(pids[1]), clients.rss_kib(), committer.last))

            stats_before = db_stats(database)
            start_wall = time.time()
            start = time.monotonic()
            end = start + SECONDS
            next_sample, next_commit = start, start + random.uniform(2, 4)
            while (now := time.monotonic()) < end:
                if now >= next_sample:
                    sample(now - start)
                    next_sample += sample_every
                if now >= next_commit:
                    committer.commit()
                    next_commit = time.monotonic() + random.uniform(2, 4)
                time.sleep(max(0.0, min(next_sample, next_commit, end) - time.monotonic()))
            sample(time.monotonic() - start)
            current = clients.ask("wait_current", last=committer.last, timeout=30)
            stats = stats_delta(stats_before, db_stats(database))
            report = clients.ask("report", timeout=60)["subscribers"]
            clients.process.wait(30)
            time.sleep(1)
        finally:
            if clients is not None:
                clients.close()
            for server in servers:
                server.stop()
        committer.verify()
        rows = analyse(report, committer.committed)
        committer.cleanup()

    latencies = [
        event[3] - committer.commit_times[event[0]] for r in report for event in r["events"] if event[0] in committer.commit_times
    ]
    first_event = [event[3] - committer.commit_times[1] for r in report for event in r["events"] if event[0] == 1]
    reconnects = [t - start_wall for r in report for t in r["connects"][1:]]
    sse = sum(1 for r in report if r["kind"] == "sse")
    print(f"soak: {SECONDS} s, {SUBSCRIBERS} subscribers ({sse} SSE, {SUBSCRIBERS - sse} WebSocket) of one channel over "
          f"2 daphnes (:{servers[0].port}, :{servers[1].port}), production heartbeat, an event every 2-4 s")
    status = "every client current" if current["current"] == SUBSCRIBERS else f"ONLY {current['current']}/{SUBSCRIBERS} current"
    print(f"  {committer.last} events committed; {status} at the end")
    print(f"  commit -> receipt over {len(latencies)} deliveries: p50 {percentile(latencies, 50) * 1000:.1f} ms  "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms  max {max(latencies, default=float('nan')) * 1000:.1f} ms"
          f"  (first event p50 {percentile(first_event, 50) * 1000:.1f} ms, ratio {percentile(latencies, 50) / percentile(first_event, 50):.1f}x)")
    if reconnects:
        print(f"  RECONNECTS during the soak: {len(reconnects)} (idle streams should stay open); at "
              + ", ".join(f"+{t:.0f} s" for t in sorted(reconnects)[:20]) + (" ..." if len(reconnects) > 20 else ""))
    else:
        print("  reconnects during the soak: 0 (every stream stayed open)")
    print_delivery_table(rows)
    per_client = workdir / "per-client.csv"
    write_per_client(per_client, rows)
    print(f"  per-client committed vs received: {per_client}")
    seconds = samples[-1][0] or 1
    print(f"  database, pg_stat_database of {database} over the soak: {stats['xact_commit'] / seconds:.0f} transactions/s, "
          f"{stats['sessions'] / seconds:.0f} sessions/s, {stats['tup_fetched'] / seconds:.0f} rows fetched/s")
    print(f"  RSS (MiB), sampled every {sample_every:.0f} s; warm-up {warm_up:.0f} s")
    print(f"  {'t (s)':>7} {'daphne 1':>9} {'daphne 2':>9} {'clients':>8} {'events':>7}")
    for elapsed, first, second, client_rss, events in samples:
        print(f"  {elapsed:7.0f} {first / 1024:9.1f} {second / 1024:9.1f} {client_rss / 1024:8.1f} {events:7d}")
    early = next((s for s in samples if s[0] >= warm_up), samples[0])
    middle = samples[len(samples) // 2]
    last = samples[-1]
    for index, name in ((1, "daphne 1"), (2, "daphne 2")):
        change = (last[index] - early[index]) / early[index] if early[index] else float("nan")
        verdict = "flat" if abs(change) <= FLAT_TOLERANCE else "NOT flat"
        print(f"  {name}: start {samples[0][index] / 1024:.1f}  after warm-up (+{early[0]:.0f} s) {early[index] / 1024:.1f}  "
              f"middle (+{middle[0]:.0f} s) {middle[index] / 1024:.1f}  end (+{last[0]:.0f} s) {last[index] / 1024:.1f} MiB: "
              f"{change * 100:+.1f}% since warm-up, {verdict}")
    slope = statistics.linear_regression([s[0] for s in samples if s[0] >= warm_up] or [0, 1],
                                         [(s[1] + s[2]) / 2048 for s in samples if s[0] >= warm_up] or [0, 0]).slope \
        if sum(1 for s in samples if s[0] >= warm_up) >= 2 else 0.0
    print(f"  daphne RSS trend after warm-up: {slope * 60:+.2f} MiB/min per process")
    print_log_problems(servers)
