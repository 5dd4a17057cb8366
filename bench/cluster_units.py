"""The capacity model's check at two hosts (docs/scaling.md): the cluster of
scripts/cluster.py (a load balancer, two app hosts of `make run`'s production mode with
one web worker each, a data host with PostgreSQL, the queue's Redis and two
channel-layer Redis) with tests/cluster.py's clients: 40 users, 5 SSE and 5 WebSocket
streams each, through the load balancer (so about 200 on each host).

Measured, as bench.unit_costs measures one host, over three windows: the cluster with
no stream (its own fixed cost: the RQ workers, the crons, the sweeps), the 400 streams
idle, and EVENTS events committed at EVENT_RATE a second through the services (from a
Django process on app1, as bench.reconnect_storm's committer does) until every client
has them all. Per window: each app host's CPU by process (web, RQ worker, cron), each
Redis' commands (INFO commandstats), CPU (INFO cpu) and connections opened, and the
database's transactions. The model predicts these from bench.unit_costs' units; the
comparison is docs/scaling.md's.

`python -m bench cluster_units` (root, Debian's haproxy, postgresql and redis-server;
about three minutes). Not in `make bench`'s default run."""

import os
import time
from pathlib import Path
from typing import Any

EVENTS = int(os.environ.get("BENCH_CLUSTER_EVENTS", "300"))
# 4,000 deliveries a second at 400 clients: what their one process receives without falling behind.
EVENT_RATE = float(os.environ.get("BENCH_CLUSTER_EVENT_RATE", "10"))
IDLE_SECONDS = float(os.environ.get("BENCH_CLUSTER_IDLE_SECONDS", "20"))
USERS = 40
REDIS = ("redis", "channels-a", "channels-b")
TICK = os.sysconf("SC_CLK_TCK")


def role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for name, marker in (("web", "granian"), ("worker", "rqworker"), ("cron", "run_cron"), ("committer", "manage.py shell"),
                         ("haproxy", "haproxy"), ("postgres", "postgres"), ("redis", "redis-server")):
        if marker in command:
            return name
    return "other"


def cpu_by_role(cluster: Any, host: str, seen: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds of the host's processes by role; `seen` keeps each pid's last reading,
    so that a process that ended (the committer) still counts."""
    for pid in cluster.pids_in(cluster.ns(host)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seen[pid] = (seen.get(pid, (role(pid), 0.0))[0], (int(fields[11]) + int(fields[12])) / TICK)
    totals: dict[str, float] = {}
    for name, seconds in seen.values():
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def redis_snapshot(port: int) -> dict[str, Any]:
    import redis

    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
        cpu = client.info("cpu")
        connections = client.info("stats")["total_connections_received"]
    finally:
        client.close()
    return {"calls": {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()},
            "cpu": cpu["used_cpu_sys"] + cpu["used_cpu_user"], "connections": connections}


class ClusterMeter:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.seen: dict[str, dict[int, tuple[str, float]]] = {host: {} for host in ("app1", "app2", "data", "lb")}

    def take(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "cpu": {host: cpu_by_role(self.cluster, host, seen) for host, seen in self.seen.items()},
                "redis": {name: redis_snapshot(self.cluster.forwarded(name)) for name in REDIS}, "xacts": self._xacts()}

    def _xacts(self) -> int:
        """The cluster database's committed transactions, read from another database."""
        import psycopg

        with psycopg.connect(self.cluster.database_url(from_root=True).rsplit("/", 1)[0] + "/postgres", autocommit=True,
                             connect_timeout=5) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = 'aistatus'").fetchone()
        assert row is not None
        return int(row[0])

    def window(self, seconds: float = 0.0, work: Any = None) -> tuple[dict[str, Any], Any]:
        before = self.take()
        result = None
        if work is None:
            time.sleep(seconds)
        else:
            result = work()
        # PostgreSQL publishes a backend's statistics at most once a second.
        time.sleep(1.1)
        after = self.take()
        delta: dict[str, Any] = {"seconds": after["t"] - before["t"], "xacts": after["xacts"] - before["xacts"], "cpu": {},
                                 "redis": {}}
        for host, roles in after["cpu"].items():
            delta["cpu"][host] = {name: seconds - before["cpu"][host].get(name, 0.0) for name, seconds in roles.items()}
        for name, now in after["redis"].items():
            was = before["redis"][name]
            calls = {cmd: n - was["calls"].get(cmd, 0) for cmd, n in now["calls"].items()}
            calls.pop("info", None)  # the meter's own
            delta["redis"][name] = {"calls": {cmd: n for cmd, n in calls.items() if n}, "cpu": now["cpu"] - was["cpu"],
                                    "connections": now["connections"] - was["connections"] - 1}
        return delta, result


COMMIT = """
import json, time
from channels.layers import get_channel_layer
from bench.reconnect_storm import Committer
from contents.models import Channel
channel = Channel.objects.get(id="{channel_id}")
committer = Committer(channel, channel.owner)
first = committer.last + 1
started = time.monotonic()
for n in range({events}):
    time.sleep(max(0.0, started + n / {rate} - time.monotonic()))
    committer.commit()
print(json.dumps({{"first": first, "last": committer.last, "times": committer.commit_times,
                  "layer": [host["address"] for host in get_channel_layer().hosts]}}))
"""


def main() -> dict[str, Any] | None:
    from bench.reconnect_storm import percentile
    from tests.cluster import ClusterUnderTest, Fleet, cluster_unavailable

    class Cluster(ClusterUnderTest):
        started = False

        def __enter__(self) -> "Cluster":
            super().__enter__()
            self.started = True
            return self

        def purge(self) -> None:
            """Say what the hosts logged last before their files go, when the start failed."""
            for host in ("app1", "app2", "lb") if not self.started else ():
                log = self.dir / f"{host}.log"
                if log.exists():
                    print(f"  {host}.log, last lines:\n    " + "\n    ".join(log.read_text(errors="replace").splitlines()[-15:]))
            super().purge()

    reason = cluster_unavailable()
    if reason:
        print(f"cluster_units: skipped: {reason}")
        return None
    figures: dict[str, Any] = {"events": EVENTS, "event_rate": EVENT_RATE, "idle_seconds": IDLE_SECONDS,
                               "load_before": os.getloadavg()}
    # Production's heartbeat and access log (the suite's cluster has quicker heartbeats and no access lines).
    with Cluster(REALTIME_HEARTBEAT_SECONDS="10", LOG_LEVEL="INFO") as cluster:
        meter = ClusterMeter(cluster)
        setup = cluster.make_users(USERS)
        channel_id = setup["channel_id"]
        time.sleep(11)  # the setup's statistics published
        figures["no_stream"], _ = meter.window(IDLE_SECONDS)
        fleet = Fleet(cluster, channel_id=channel_id,
                      clients=[(kind, token) for token in setup["tokens"] for kind in ["sse"] * 5 + ["ws"] * 5])
        try:
            live = fleet.wait_live(timeout=120)
            figures["live"], figures["spread"] = live, cluster.streams_at()
            if live < 10 * USERS:
                raise RuntimeError(f"only {live} of {10 * USERS} clients connected")
            time.sleep(12)
            figures["idle"], _ = meter.window(IDLE_SECONDS)

            def commit_all() -> dict[str, Any]:
                committed = cluster.django(COMMIT.format(channel_id=channel_id, events=EVENTS, rate=EVENT_RATE), host="app1")
                current = fleet.wait_current(committed["last"], timeout=120)
                if current["current"] < live:
                    raise RuntimeError(f"only {current['current']} of {live} clients have every event")
                return committed

            figures["events_window"], committed = meter.window(work=commit_all)
            figures["committer_layer"] = committed["layer"]
            times = {int(seq): t for seq, t in committed["times"].items()}
            latencies = [t - times[seq] for client in fleet.report() for seq, _, _, t in client["events"] if seq in times]
            figures["delivery_ms"] = {"p50": percentile(latencies, 50) * 1000, "p99": percentile(latencies, 99) * 1000,
                                      "max": max(latencies) * 1000, "deliveries": len(latencies)}
        finally:
            fleet.close()
    figures["load_after"] = os.getloadavg()
    print_figures(figures)
    return figures


def per_event(f: dict[str, Any]) -> dict[str, Any]:
    """The event window's costs per event, less the idle window's rates over its length."""
    busy, idle, events = f["events_window"], f["idle"], f["events"]
    scale = busy["seconds"] / idle["seconds"]
    out: dict[str, Any] = {"cpu_ms": {}, "redis_calls": {}, "redis_cpu_us": {}, "redis_connections": {}}
    for host in ("app1", "app2"):
        out["cpu_ms"][host] = {name: (busy["cpu"][host].get(name, 0.0) - idle["cpu"][host].get(name, 0.0) * scale) * 1000 / events
                               for name in busy["cpu"][host]}
    for name in REDIS:
        b, i = busy["redis"][name], idle["redis"][name]
        out["redis_calls"][name] = (sum(b["calls"].values()) - sum(i["calls"].values()) * scale) / events
        out["redis_cpu_us"][name] = (b["cpu"] - i["cpu"] * scale) * 1e6 / events
        out["redis_connections"][name] = (b["connections"] - i["connections"] * scale) / events
    out["xacts"] = (busy["xacts"] - idle["xacts"] * scale) / events
    return out


def print_figures(f: dict[str, Any]) -> None:
    from bench import harness

    f["per_event"] = e = per_event(f)
    print(f"cluster_units: the cluster of scripts/cluster.py (one web worker per app host, production heartbeat), "
          f"{f['live']} streams through the load balancer (held per host: {f['spread']}); load average before "
          f"{' '.join(f'{x:.2f}' for x in f['load_before'])}, after {' '.join(f'{x:.2f}' for x in f['load_after'])}")
    rows = []
    for label, key in (("no stream", "no_stream"), (f"{f['live']} streams idle", "idle"),
                       (f"{f['events']} events at up to {f['event_rate']:.0f}/s", "events_window")):
        w = f[key]
        rows.append([label, w["seconds"],
                     *(f"{w['cpu'][host].get('web', 0) * 1000 / w['seconds']:.1f} / {w['cpu'][host].get('worker', 0) * 1000 / w['seconds']:.1f}"
                       f" / {w['cpu'][host].get('cron', 0) * 1000 / w['seconds']:.1f}" for host in ("app1", "app2")),
                     *(f"{sum(w['redis'][name]['calls'].values()) / w['seconds']:.1f}" for name in REDIS),
                     w["xacts"] / w["seconds"]])
    print("  per second of each window: CPU ms/s of each app host's web / RQ worker / cron processes; commands/s of each Redis; "
          "SQL transactions/s")
    harness.print_table(["window", "s", "app1 web/worker/cron", "app2 web/worker/cron", *REDIS, "SQL xacts/s"], rows)
    print(f"  per event (the idle window's rates subtracted): web CPU app1 {e['cpu_ms']['app1'].get('web', 0):.2f} ms, app2 "
          f"{e['cpu_ms']['app2'].get('web', 0):.2f} ms; SQL transactions {e['xacts']:.2f}")
    for name in REDIS:
        by = {cmd: n / f["events"] for cmd, n in f["events_window"]["redis"][name]["calls"].items()}
        print(f"    Redis {name}: {e['redis_calls'][name]:.1f} commands, {e['redis_cpu_us'][name]:.0f} us CPU, "
              f"{e['redis_connections'][name]:.2f} connections opened; commandstats per event (idle included): "
              + ", ".join(f"{cmd} {v:.2f}" for cmd, v in sorted(by.items(), key=lambda kv: -kv[1])[:12]))
    print(f"  the committer's channel layer: {f['committer_layer']}")
    d = f["delivery_ms"]
    print(f"  commit -> receipt over {d['deliveries']:,} deliveries: p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, "
          f"max {d['max']:.0f} ms")
