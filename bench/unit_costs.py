"""Unit costs for the capacity model (docs/scaling.md): what one request, one idle
stream and one delivered event cost the web processes, PostgreSQL and each Redis.

Two server processes (one granian worker each, production mode) run against the
bench's own database and two private Redis started here, so that INFO commandstats
and INFO cpu count this run alone (the machine's Redis is shared): one for the cache,
the queue and the stream leases (REDIS_URL), one for the channel layer
(CHANNEL_LAYER_REDIS_URLS), as the cluster's data host has them. In order:

1. requests: 8 keep-alive clients back to back on one process for a few seconds each,
   per kind (the no-op GET /v1/auth/me, the unchanged status poll answered 304, the
   status answered 200, the seed's full list of 25): server CPU, Redis calls and SQL
   transactions per request;
2. the processes idle with no stream (their fixed cost); then, for each of STEPS (100
   and 400 streams of one channel, half SSE, half WebSocket, spread over both
   processes): idle for IDLE_SECONDS (CPU, memory, SQL transactions, Redis calls), then
   EVENTS events committed at up to EVENT_RATE a second through the services (one
   transaction each, as bench.reconnect_storm's committer does) until every subscriber
   has them all: CPU per event in the web processes, Redis calls and Redis CPU per
   event (the step's idle rates subtracted), commit-to-receipt latency. The difference
   between the steps is the cost per stream and per delivery, the rest the cost per
   event of each process holding the stream;
3. a few more events under MONITOR on both Redis: which commands one event costs,
   which of them are sent by a client (round trips) and which run inside a Lua script;
4. the heartbeat's catch-up read of an up-to-date stream (realtime.delivery.events_after,
   what each process runs once per heartbeat for each stream it serves), timed here;
5. the stream held by SPREAD processes (8), two streams each: an event's cost when a
   channel's subscribers are spread over many processes (Redis calls, web CPU per process).

`python -m bench unit_costs` (about five minutes; not in `make bench`'s default run,
which is near its 10 minutes already). The figures go to results.json as every
benchmark's; docs/scaling.md builds the capacity model on them."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Streams held in steps (all of one channel, half SSE, half WebSocket, over both processes):
# the difference between the steps is the cost per stream and per delivery.
STEPS = [int(x) for x in os.environ.get("BENCH_UNITS_STEPS", "100,400").split(",")]
EVENTS = int(os.environ.get("BENCH_UNITS_EVENTS", "300"))
EVENT_RATE = float(os.environ.get("BENCH_UNITS_EVENT_RATE", "15"))
IDLE_SECONDS = float(os.environ.get("BENCH_UNITS_IDLE_SECONDS", "20"))
REQUEST_SECONDS = float(os.environ.get("BENCH_UNITS_REQUEST_SECONDS", "4"))
REQUEST_CLIENTS = 8
MONITOR_EVENTS = 30
# Then the stream over this many processes (two streams each), SPREAD_EVENTS events; 0: not.
SPREAD = int(os.environ.get("BENCH_UNITS_SPREAD", "8"))
SPREAD_EVENTS = 150
CATCH_UP_READS = 400
DATABASE = "aistatus_bench_units"
# The inner process's last line: the figures, for the outer one to return.
FIGURES_LINE = "UNIT_COSTS_FIGURES "


# --- the outer process (run by `python -m bench`): private Redis, then the inner one --------


class PrivateRedis:
    """A redis-server of this run's own on a free port: nothing on disk, noeviction."""

    def __init__(self, label: str) -> None:
        from bench.reconnect_storm import free_port

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"bench-units-{label}-")
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxclients", "10000", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> dict[str, Any] | None:
    if shutil.which("redis-server") is None:
        print("unit_costs: needs redis-server (Debian's redis-server) for Redis of its own; skipped")
        return None
    cache, layer = PrivateRedis("cache"), PrivateRedis("layer")
    figures: dict[str, Any] | None = None
    try:
        env = {**os.environ, "REDIS_URL": cache.url, "CHANNEL_LAYER_REDIS_URLS": layer.url}
        env.pop("CACHE_REDIS_URL", None)
        with subprocess.Popen([sys.executable, "-m", "bench.unit_costs", "--inner", cache.url, layer.url], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, text=True) as inner:
            assert inner.stdout is not None
            for line in inner.stdout:
                if line.startswith(FIGURES_LINE):
                    figures = json.loads(line[len(FIGURES_LINE):])
                else:
                    print(line, end="", flush=True)
        if inner.returncode != 0 or figures is None:
            raise RuntimeError(f"the unit-cost run failed ({inner.returncode}); its output is above")
        figures["redis_calibration"] = calibrated = calibrate(layer)
        if calibrated:
            print(f"  Redis CPU when busy (redis-benchmark, 10 connections): {calibrated['round_trip_us']:.1f} us a round "
                  f"trip (PING), {calibrated['script_of_3_us']:.1f} us a script of three commands (EVAL), "
                  f"{calibrated['connection_us']:.1f} us a connection opened for one PING")
    finally:
        cache.stop()
        layer.stop()
    return figures


def calibrate(redis: PrivateRedis) -> dict[str, float]:
    """Redis CPU per round trip when busy (redis-benchmark, 10 connections back to back),
    per script of three commands, and per connection opened for one PING: an event's
    Redis CPU measured at a few events a second is an upper bound (an idle Redis wakes
    up for every packet); at a shard's full load a round trip costs about this."""
    import redis as redis_py

    if shutil.which("redis-benchmark") is None:
        return {}
    client = redis_py.Redis(port=redis.port)
    script = "redis.call('ZCOUNT', KEYS[1], '-inf', '+inf'); redis.call('ZADD', KEYS[1], 1, ARGV[1]); redis.call('EXPIRE', KEYS[1], 60)"
    runs = {"round_trip_us": (["-t", "ping_mbulk"], 50000), "script_of_3_us": (["eval", script, "1", "bench-k", "m"], 50000),
            "connection_us": (["-t", "ping_mbulk", "-k", "0"], 10000)}
    out = {}
    try:
        for name, (arguments, n) in runs.items():
            cpu = client.info("cpu")
            before = cpu["used_cpu_sys"] + cpu["used_cpu_user"]
            subprocess.run(["redis-benchmark", "-p", str(redis.port), "-n", str(n), "-c", "10", "-q", *arguments],
                           capture_output=True, timeout=120, check=False)
            cpu = client.info("cpu")
            out[name] = (cpu["used_cpu_sys"] + cpu["used_cpu_user"] - before) * 1e6 / n
    finally:
        client.close()
    return out


# --- the inner process: Django on the private Redis ------------------------------------------


def redis_snapshot(url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        cpu = client.info("cpu")
        connections = client.info("stats")["total_connections_received"]
    finally:
        client.close()
    return {"calls": {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()},
            "cpu": cpu["used_cpu_sys"] + cpu["used_cpu_user"], "connections": connections}


class Meter:
    """Snapshots of everything the units are made of: the server processes' CPU and
    memory, both Redis (commands by name, CPU) and the bench database's transactions."""

    def __init__(self, daphnes: list[Any], redis_urls: dict[str, str]) -> None:
        self.daphnes, self.redis_urls = daphnes, redis_urls

    def take(self) -> dict[str, Any]:
        from bench import harness
        from bench.reconnect_storm import db_stats, rss_kib

        return {"t": time.monotonic(),
                "cpu_each": [sum(harness.cpu_seconds(pid) for pid in d.pids()) for d in self.daphnes],
                "rss_kib": sum(rss_kib(pid) for d in self.daphnes for pid in d.pids()),
                "redis": {name: redis_snapshot(url) for name, url in self.redis_urls.items()},
                "db": db_stats(DATABASE)}

    def window(self, seconds: float = 0.0, work: Any = None) -> tuple[dict[str, Any], Any]:
        """The deltas over `seconds` of waiting, or over `work()` (and its result). The
        statistics of this process's own transactions are flushed at both ends (one
        SELECT, subtracted); the servers' pools publish theirs at most once a second."""
        from bench.reconnect_storm import flush_own_stats

        flush_own_stats()
        before = self.take()
        result = None
        if work is None:
            time.sleep(seconds)
        else:
            result = work()
        flush_own_stats()
        return self.delta(before, self.take()), result

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        redis_delta = {}
        for name, now in after["redis"].items():
            was = before["redis"][name]
            calls = {cmd: n - was["calls"].get(cmd, 0) for cmd, n in now["calls"].items()}
            # The INFO calls of the meter itself are not the application's.
            calls.pop("info", None)
            redis_delta[name] = {"calls": {cmd: n for cmd, n in calls.items() if n}, "cpu": now["cpu"] - was["cpu"],
                                 # the meter's own connection for its INFO calls
                                 "connections": now["connections"] - was["connections"] - 1}
        cpu_each = [a - b for a, b in zip(after["cpu_each"], before["cpu_each"], strict=True)]
        return {"seconds": after["t"] - before["t"], "cpu": sum(cpu_each), "cpu_each": cpu_each,
                "rss_kib": after["rss_kib"] - before["rss_kib"], "redis": redis_delta,
                # the closing flush's SELECT is this process's, not the servers'
                "xacts": after["db"]["xact_commit"] - before["db"]["xact_commit"] - 1}


def total_calls(delta: dict[str, Any], name: str) -> int:
    return sum(delta["redis"][name]["calls"].values())


def request_costs(servers: Any, redis_urls: dict[str, str], channel: Any, token: str) -> list[dict[str, Any]]:
    """CPU, Redis calls and SQL transactions per request of each kind, on one process."""

    single = Meter(servers.daphnes[:1], redis_urls)
    kinds = [
        ("no-op GET /v1/auth/me", "/v1/auth/me", False),
        ("status, unchanged (304)", f"/api/contents/{channel.id}/status", True),
        ("status (200)", f"/api/contents/{channel.id}/status", False),
        ("seed's full list of 25 (200)", f"/contents/channel/{channel.id}", False),
    ]
    rows = []
    for label, path, conditional in kinds:
        config = {"port": servers.ports[0], "token": token, "count": REQUEST_CLIENTS, "seconds": REQUEST_SECONDS,
                  "path": path, "conditional": conditional}
        with monitored({"cache": redis_urls["cache"]}) as counts:
            delta, report = single.window(work=lambda config=config: back_to_back(config))
        totals = report["totals"]
        requests = max(1, totals.get("requests", 0))
        rows.append({
            "label": label, "requests": requests, "rate": requests / report["elapsed"],
            "statuses": {k: v for k, v in totals.items() if k.startswith(("status_", "error_"))},
            "cpu_ms": delta["cpu"] * 1000 / requests,
            "cache_redis_calls": total_calls(delta, "cache") / requests,
            "cache_redis_commands": {cmd: n / requests for cmd, n in delta["redis"]["cache"]["calls"].items()},
            "layer_redis_calls": total_calls(delta, "layer") / requests,
            "cache_redis_round_trips": round_trips(counts["cache"]) / requests,
            "sql_xacts": delta["xacts"] / requests,
            "bytes_in": totals.get("bytes_in", 0) / requests,
        })
    return rows


def back_to_back(config: dict[str, Any]) -> dict[str, Any]:
    """`python -m bench.unit_costs --requests CONFIG` in a process of its own."""
    done = subprocess.run([sys.executable, "-m", "bench.unit_costs", "--requests", json.dumps(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=config["seconds"] + 60, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def requests_back_to_back(config: dict[str, Any]) -> dict[str, Any]:
    """`count` keep-alive connections each sending GET `path` again as soon as it is
    answered (with the ETag it was last given when `conditional`), for `seconds`."""
    import asyncio

    from bench.clients import read_response, request_bytes

    totals: Counter = Counter()
    port = config["port"]
    deadline = time.monotonic() + config["seconds"]

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        etag = None
        try:
            while time.monotonic() < deadline:
                headers = {"Authorization": f"Bearer {config['token']}", "Accept": "application/json"}
                if config["conditional"] and etag:
                    headers["If-None-Match"] = etag
                writer.write(request_bytes("GET", config["path"], port, headers))
                status, answer, _, size = await read_response(reader)
                totals["requests"] += 1
                totals["bytes_in"] += size
                totals[f"status_{status}"] += 1
                etag = answer.get("etag", etag)
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(config["count"])))
    return {"totals": dict(totals), "elapsed": time.monotonic() - started}


def per_second(delta: dict[str, Any]) -> dict[str, Any]:
    s = delta["seconds"]
    return {"cpu": delta["cpu"] / s, "xacts": delta["xacts"] / s,
            "redis_calls": {name: total_calls(delta, name) / s for name in delta["redis"]},
            "redis_cpu": {name: r["cpu"] / s for name, r in delta["redis"].items()},
            "redis_by_command": {name: {cmd: n / s for cmd, n in r["calls"].items()} for name, r in delta["redis"].items()}}


def monitor_counts(url: str, stop: threading.Event, counts: Counter, ready: threading.Event) -> None:
    """Commands Redis runs while `stop` is unset: (command, 'lua' or 'client') -> count."""
    import redis

    client = redis.Redis.from_url(url)
    with client.monitor() as monitor:
        ready.set()
        connection = monitor.connection
        assert connection is not None
        while not stop.is_set():
            if not connection.can_read(timeout=0.1):
                continue
            line = monitor.next_command()
            if line["command"].upper().startswith("INFO") or line["command"].upper() == "MONITOR":
                continue
            counts[(line["command"].split()[0].upper(), "lua" if line.get("client_type") == "lua" else "client")] += 1
    client.close()


@contextlib.contextmanager
def monitored(redis_urls: dict[str, str]) -> Iterator[dict[str, dict[str, int]]]:
    """MONITOR on each Redis while the block runs: Redis name -> "COMMAND (client|lua)" ->
    count, filled in when the block ends."""
    counters: dict[str, Counter] = {name: Counter() for name in redis_urls}
    stop = threading.Event()
    readies = {name: threading.Event() for name in redis_urls}
    watchers = [threading.Thread(target=monitor_counts, args=(url, stop, counters[name], readies[name]), daemon=True)
                for name, url in redis_urls.items()]
    for watcher in watchers:
        watcher.start()
    for ready in readies.values():
        ready.wait(10)
    counts: dict[str, dict[str, int]] = {}
    try:
        yield counts
    finally:
        time.sleep(0.3)  # what the block sent last reaches the monitor
        stop.set()
        for watcher in watchers:
            watcher.join(5)
        counts.update({name: {f"{cmd} ({source})": n for (cmd, source), n in sorted(c.items())}
                       for name, c in counters.items()})


def round_trips(counts: dict[str, int]) -> int:
    """The calls clients sent (a pipeline's commands each count; MULTI and EXEC do not)."""
    return sum(n for key, n in counts.items() if key.endswith("(client)") and not key.startswith(("MULTI", "EXEC")))


def catch_up_reads(stream: str) -> dict[str, Any]:
    """The heartbeat's read of an up-to-date stream, CATCH_UP_READS times in a row as the
    hub does them (one stream after another): wall time and this process's CPU each."""
    import asyncio

    from realtime.delivery import events_after
    from realtime.streams import current_seq

    latest = current_seq(stream)

    async def reads() -> None:
        for _ in range(CATCH_UP_READS):
            await events_after(stream, latest, 1000)

    asyncio.run(reads())  # warm: the pool's connections, the threads
    cpu, started = time.process_time(), time.perf_counter()
    asyncio.run(reads())
    return {"ms": (time.perf_counter() - started) * 1000 / CATCH_UP_READS,
            "cpu_ms": (time.process_time() - cpu) * 1000 / CATCH_UP_READS}


def inner(cache_url: str, layer_url: str) -> dict[str, Any]:
    from bench import harness
    from bench.reconnect_storm import ClientProcess, Committer, bench_database, bench_setup, percentile, raise_fd_limit

    raise_fd_limit()
    redis_urls = {"cache": cache_url, "layer": layer_url}
    figures: dict[str, Any] = {"steps": [], "events": EVENTS, "event_rate": EVENT_RATE, "idle_seconds": IDLE_SECONDS,
                               "load_before": os.getloadavg()}
    with bench_database(DATABASE) as database_url:
        user, token, channel = bench_setup("units")
        harness.copy_contents(channel, user, 25)
        committer = Committer(channel, user)
        # The clients are one address: no per-address bound on open connections (64 by default).
        servers = harness.Servers(2, database_url, "units", env={"WEB_MAX_OPEN_PER_CLIENT": "0"})
        meter = Meter(servers.daphnes, redis_urls)
        fleets: list[ClientProcess] = []
        try:
            servers.start()
            figures["requests"] = request_costs(servers, redis_urls, channel, token)
            # An idle backend publishes its statistics up to 10 s after its last transaction.
            time.sleep(11)
            empty, _ = meter.window(IDLE_SECONDS)
            figures["idle_empty"] = {**per_second(empty), "rss_kib": servers.rss_kib()}

            held = 0
            for step in STEPS:
                fleets.append(ClientProcess(ports=servers.ports, channel_id=str(channel.id), token=token, count=step - held,
                                            log_path=servers.workdir / f"clients-{step}.log", ramp_seconds=0.01))
                held = step
                live = sum(fleet.ask("wait_live", timeout=90)["live"] for fleet in fleets)
                if live < step:
                    raise RuntimeError(f"only {live} of {step} subscribers connected")
                # A heartbeat and the statistics' 10 s: the connects' transactions are published.
                time.sleep(12)
                idle, _ = meter.window(IDLE_SECONDS)
                first = committer.last + 1

                def commit_all() -> list[dict[str, Any]]:
                    started = time.monotonic()
                    for n in range(EVENTS):
                        time.sleep(max(0.0, started + n / EVENT_RATE - time.monotonic()))
                        committer.commit()
                    return [fleet.ask("wait_current", last=committer.last, timeout=60) for fleet in fleets]

                busy, answers = meter.window(work=commit_all)
                if sum(answer["current"] for answer in answers) < step:
                    raise RuntimeError(f"not every one of {step} subscribers received every event")
                figures["steps"].append({
                    "subscribers": step, "first": first, "idle": {**per_second(idle), "rss_kib": servers.rss_kib()},
                    "events_window": {"seconds": busy["seconds"], "cpu_s": busy["cpu"], "cpu_each_s": busy["cpu_each"],
                                      "xacts_total": busy["xacts"],
                                      "redis_calls_total": {name: total_calls(busy, name) for name in redis_urls},
                                      "redis_cpu_s": {name: r["cpu"] for name, r in busy["redis"].items()},
                                      "redis_connections": {name: r["connections"] for name, r in busy["redis"].items()},
                                      "redis_by_command_total": {name: r["calls"] for name, r in busy["redis"].items()}},
                })

            with monitored(redis_urls) as counts:
                monitor_from = time.monotonic()
                for n in range(MONITOR_EVENTS):
                    time.sleep(max(0.0, monitor_from + n / EVENT_RATE - time.monotonic()))
                    committer.commit()
                for fleet in fleets:
                    fleet.ask("wait_current", last=committer.last, timeout=60)
                monitor_seconds = time.monotonic() - monitor_from
            figures["monitor"] = {"events": MONITOR_EVENTS, "seconds": monitor_seconds, "counts": counts}

            reports = [fleet.ask("report", timeout=120)["subscribers"] for fleet in fleets]
            for index, step in enumerate(figures["steps"]):
                wanted = set(range(step["first"], step["first"] + EVENTS))
                # The fleets connected by then: a later one replayed these events when it connected.
                latencies = [t - committer.commit_times[seq] for report in reports[:index + 1] for sub in report
                             for seq, _, _, t in sub["events"] if seq in wanted]
                step["delivery_ms"] = {"p50": percentile(latencies, 50) * 1000, "p99": percentile(latencies, 99) * 1000,
                                       "max": max(latencies) * 1000, "deliveries": len(latencies)}
            figures["catch_up_read"] = catch_up_reads(committer.stream)
            from realtime.models import Event

            sizes = [len(json.dumps({"type": t, "id": s, "data": p}, separators=(",", ":")))
                     for s, t, p in Event.objects.filter(stream=committer.stream).values_list("seq", "type", "payload")]
            figures["event_bytes"] = sum(sizes) / len(sizes)
        finally:
            for fleet in fleets:
                fleet.close()
            servers.stop()
        if SPREAD:
            figures["spread"] = spread_over(SPREAD, database_url, redis_urls, channel, token, committer)
        committer.cleanup()
    figures["load_after"] = os.getloadavg()
    return figures


def spread_over(processes: int, database_url: str, redis_urls: dict[str, str], channel: Any, token: str,
                committer: Any) -> dict[str, Any]:
    """The same stream held by `processes` processes, two streams each (an SSE and a
    WebSocket): what an event costs each process it reaches, and Redis, when a
    channel's subscribers are spread over many processes (what a load balancer that
    ignores the channel does)."""
    from bench import harness
    from bench.reconnect_storm import ClientProcess

    servers = harness.Servers(processes, database_url, "units-spread", env={"WEB_MAX_OPEN_PER_CLIENT": "0"})
    meter = Meter(servers.daphnes, redis_urls)
    fleet: ClientProcess | None = None
    try:
        servers.start()
        fleet = ClientProcess(ports=servers.ports, channel_id=str(channel.id), token=token, count=2 * processes,
                              log_path=servers.workdir / "clients.log", ramp_seconds=0.01)
        if fleet.ask("wait_live", timeout=90)["live"] < 2 * processes:
            raise RuntimeError("not every spread subscriber connected")
        time.sleep(12)
        idle, _ = meter.window(IDLE_SECONDS / 2)

        def commit_all() -> dict[str, Any]:
            assert fleet is not None
            started = time.monotonic()
            for n in range(SPREAD_EVENTS):
                time.sleep(max(0.0, started + n / EVENT_RATE - time.monotonic()))
                committer.commit()
            return fleet.ask("wait_current", last=committer.last, timeout=60)

        busy, answer = meter.window(work=commit_all)
        if answer["current"] < 2 * processes:
            raise RuntimeError("not every spread subscriber received every event")
    finally:
        if fleet is not None:
            fleet.close()
        servers.stop()
    seconds = busy["seconds"]
    return {"processes": processes, "subscribers": 2 * processes, "events": SPREAD_EVENTS, "seconds": seconds,
            "cpu_ms_per_event": (busy["cpu"] - idle["cpu"] / idle["seconds"] * seconds) * 1000 / SPREAD_EVENTS,
            "layer_redis_calls_per_event": (total_calls(busy, "layer") - total_calls(idle, "layer") / idle["seconds"] * seconds)
            / SPREAD_EVENTS,
            "layer_redis_cpu_us_per_event": (busy["redis"]["layer"]["cpu"] - idle["redis"]["layer"]["cpu"] / idle["seconds"] * seconds)
            * 1e6 / SPREAD_EVENTS}


# --- the figures, as the model uses them ----------------------------------------------------


def step_units(f: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """One step's costs: the event window's, less the step's idle rates over its length."""
    idle, busy, events = step["idle"], step["events_window"], f["events"]
    seconds, n = busy["seconds"], step["subscribers"]
    event_cpu = busy["cpu_s"] - idle["cpu"] * seconds
    out = {
        "subscribers": n, "processes": len(busy["cpu_each_s"]), "events_per_s": events / seconds,
        "idle_cpu_ms_s": idle["cpu"] * 1000, "rss_mib": idle["rss_kib"] / 1024, "idle_xacts_per_min": idle["xacts"] * 60,
        "idle_redis_calls_per_s": idle["redis_calls"],
        "cpu_ms_per_event": event_cpu * 1000 / events, "cpu_us_per_delivery_gross": event_cpu * 1e6 / (events * n),
        "xacts_per_event": (busy["xacts_total"] - idle["xacts"] * seconds) / events,
        "delivery_ms": step.get("delivery_ms", {}),
    }
    for name in busy["redis_calls_total"]:
        out[f"{name}_redis_calls_per_event"] = (busy["redis_calls_total"][name] - idle["redis_calls"][name] * seconds) / events
        out[f"{name}_redis_cpu_us_per_event"] = (busy["redis_cpu_s"][name] - idle["redis_cpu"][name] * seconds) * 1e6 / events
        out[f"{name}_redis_connections_per_event"] = busy["redis_connections"][name] / events
    return out


def units(f: dict[str, Any]) -> dict[str, Any]:
    """The per-unit costs of a run: each step's, and the two ends' differences, which
    part the cost per stream or per delivery from the fixed cost per process."""
    steps = [step_units(f, step) for step in f["steps"]]
    empty = f["idle_empty"]
    lo, hi = steps[0], steps[-1]
    processes = lo["processes"]
    out: dict[str, Any] = {"steps": steps, "processes": processes,
                           "idle_cpu_ms_per_process_s": empty["cpu"] * 1000 / processes,
                           "idle_xacts_per_min_no_stream": empty["xacts"] * 60,
                           "kib_per_stream_first": (lo["rss_mib"] * 1024 - empty["rss_kib"]) / lo["subscribers"]}
    if hi["subscribers"] > lo["subscribers"]:
        more = hi["subscribers"] - lo["subscribers"]
        per_delivery = (hi["cpu_ms_per_event"] - lo["cpu_ms_per_event"]) * 1000 / more
        out.update({
            "idle_cpu_us_per_stream_s": (hi["idle_cpu_ms_s"] - lo["idle_cpu_ms_s"]) * 1000 / more,
            "kib_per_stream": (hi["rss_mib"] - lo["rss_mib"]) * 1024 / more,
            "idle_xacts_per_stream_min": (hi["idle_xacts_per_min"] - lo["idle_xacts_per_min"]) / more,
            "cpu_us_per_delivery": per_delivery,
            "cpu_ms_per_event_per_process": (lo["cpu_ms_per_event"] - lo["subscribers"] * per_delivery / 1000) / processes,
        })
    spread = f.get("spread")
    if spread and "cpu_us_per_delivery" in out:
        out["spread_cpu_ms_per_event_per_process"] = (
            spread["cpu_ms_per_event"] - spread["subscribers"] * out["cpu_us_per_delivery"] / 1000) / spread["processes"]
    for name in ("layer", "cache"):
        out[f"{name}_redis_calls_per_event"] = sum(s[f"{name}_redis_calls_per_event"] for s in steps) / len(steps)
        out[f"{name}_redis_cpu_us_per_event"] = sum(s[f"{name}_redis_cpu_us_per_event"] for s in steps) / len(steps)
        # From MONITOR's few events, idle traffic included (a few calls a second).
        out[f"{name}_redis_round_trips_per_event"] = round_trips(f["monitor"]["counts"][name]) / f["monitor"]["events"]
        out[f"{name}_redis_connections_per_event"] = sum(s[f"{name}_redis_connections_per_event"] for s in steps) / len(steps)
    return out


def print_figures(f: dict[str, Any]) -> None:
    from bench import harness

    u = f["units"]
    print(f"unit_costs: 2 {harness.WEB_SERVER} processes (one worker each, production mode), a private Redis for the cache "
          f"and one for the channel layer; load average before {' '.join(f'{x:.2f}' for x in f['load_before'])}, after "
          f"{' '.join(f'{x:.2f}' for x in f['load_after'])} (2 cores shared with the clients, PostgreSQL and other work)")
    print(f"  requests: {REQUEST_CLIENTS} keep-alive clients back to back, {REQUEST_SECONDS:.0f} s each kind, one process; "
          "Redis calls: every command run, those inside a script included (sent: the calls the process sent)")
    harness.print_table(
        ["request", "requests", "req/s", "server CPU ms", "cache Redis calls (sent)", "layer Redis calls", "SQL xacts", "bytes in",
         "answers"],
        [[r["label"], r["requests"], r["rate"], r["cpu_ms"], f"{r['cache_redis_calls']:.2f} ({r['cache_redis_round_trips']:.2f})",
          r["layer_redis_calls"], r["sql_xacts"], r["bytes_in"], " ".join(f"{k}={v}" for k, v in r["statuses"].items())]
         for r in f["requests"]])
    for r in f["requests"]:
        print(f"    {r['label']}: cache Redis per request: "
              + ", ".join(f"{cmd} {n:.2f}" for cmd, n in sorted(r["cache_redis_commands"].items(), key=lambda kv: -kv[1])))
    print(f"  streams of one channel (half SSE, half WebSocket, one user) over both processes, production heartbeat; per "
          f"step: idle for {f['idle_seconds']:.0f} s, then {f['events']} events committed at up to {f['event_rate']:.0f}/s "
          f"until every subscriber has them (the idle rates subtracted); an event is {f['event_bytes']:.0f} bytes "
          f"as a WebSocket frame's text")
    harness.print_table(
        ["streams", "idle CPU ms/s", "RSS MiB", "idle SQL xacts/min", "idle Redis calls/s cache, layer", "events/s",
         "CPU ms/event", "us/delivery", "SQL xacts/event", "layer Redis calls/event", "layer Redis CPU us/event",
         "cache Redis calls/event", "cache Redis CPU us/event", "delivery p50/p99 ms"],
        [[s["subscribers"], s["idle_cpu_ms_s"], s["rss_mib"], s["idle_xacts_per_min"],
          f"{s['idle_redis_calls_per_s']['cache']:.1f}, {s['idle_redis_calls_per_s']['layer']:.1f}", s["events_per_s"],
          s["cpu_ms_per_event"], s["cpu_us_per_delivery_gross"], s["xacts_per_event"], s["layer_redis_calls_per_event"],
          s["layer_redis_cpu_us_per_event"], s["cache_redis_calls_per_event"], s["cache_redis_cpu_us_per_event"],
          f"{s['delivery_ms'].get('p50', float('nan')):.0f}/{s['delivery_ms'].get('p99', float('nan')):.0f}"]
         for s in u["steps"]])
    rows = [["no stream: CPU per process (ms/s)", u["idle_cpu_ms_per_process_s"]],
            ["no stream: SQL xacts per minute, both processes", u["idle_xacts_per_min_no_stream"]],
            ["RSS per stream, first step (KiB)", u["kib_per_stream_first"]]]
    if "cpu_us_per_delivery" in u:
        rows += [["RSS per stream, between the steps (KiB)", u["kib_per_stream"]],
                 ["idle CPU per stream (us/s)", u["idle_cpu_us_per_stream_s"]],
                 ["idle SQL xacts per stream per minute (between the steps)", u["idle_xacts_per_stream_min"]],
                 ["web CPU per delivery (us)", u["cpu_us_per_delivery"]],
                 ["web CPU per event per process holding the stream (ms)", u["cpu_ms_per_event_per_process"]]]
    rows += [["channel-layer Redis calls per event (sent, MONITOR)",
              f"{u['layer_redis_calls_per_event']:.1f} ({u['layer_redis_round_trips_per_event']:.1f})"],
             ["channel-layer Redis CPU per event (us)", u["layer_redis_cpu_us_per_event"]],
             ["channel-layer Redis connections opened per event", u["layer_redis_connections_per_event"]],
             ["cache Redis calls per event (sent, MONITOR)",
              f"{u['cache_redis_calls_per_event']:.1f} ({u['cache_redis_round_trips_per_event']:.1f})"],
             ["cache Redis CPU per event (us)", u["cache_redis_cpu_us_per_event"]],
             ["cache Redis connections opened per event", u["cache_redis_connections_per_event"]],
             ["heartbeat catch-up read, up to date: wall / CPU (ms)",
              f"{f['catch_up_read']['ms']:.2f} / {f['catch_up_read']['cpu_ms']:.2f}"]]
    spread = f.get("spread")
    if spread:
        print(f"  the stream over {spread['processes']} processes, 2 streams each, {spread['events']} events: "
              f"{spread['cpu_ms_per_event']:.1f} ms of web CPU per event in all "
              f"({u.get('spread_cpu_ms_per_event_per_process', float('nan')):.2f} ms per process, its deliveries "
              f"taken out at the unit below), {spread['layer_redis_calls_per_event']:.1f} channel-layer Redis calls "
              f"and {spread['layer_redis_cpu_us_per_event']:.0f} us of its CPU per event (7 + 10 x processes: "
              f"{7 + 10 * spread['processes']})")
    print("  units (between the steps: the difference of the two, per stream or per delivery)")
    harness.print_table(["unit", "value"], rows)
    m = f["monitor"]
    print(f"  commands per event under MONITOR ({m['events']} events; 'client': a call a process sent, 'lua': run inside "
          f"a script), idle traffic included over {m['seconds']:.1f} s:")
    for name, counts in m["counts"].items():
        print(f"    {name}: " + ", ".join(f"{cmd} {n / m['events']:.2f}" for cmd, n in sorted(counts.items(), key=lambda kv: -kv[1])))


def run_inner(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_ENV", "development")
    import django

    django.setup()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    figures = inner(argv[0], argv[1])
    figures["units"] = units(figures)
    print_figures(figures)
    with contextlib.suppress(BrokenPipeError):
        print(FIGURES_LINE + json.dumps(figures, default=str), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inner"]:
        run_inner(sys.argv[2:])
    elif sys.argv[1:2] == ["--requests"]:
        import asyncio

        print(json.dumps(asyncio.run(requests_back_to_back(json.loads(sys.argv[2])))))
    else:
        raise SystemExit("python -m bench unit_costs")
