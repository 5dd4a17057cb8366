"""Poll cost per client-minute: N clients watching one channel of 25 contents for a
fixed window while a content moves through its stages (an event every 2 s), four ways:

- before (the seed): the full list, `GET /contents/channel/{id}`, every 3 s;
- the status endpoint, `GET /api/contents/{id}/status`, every 3 s;
- the same, conditional (If-None-Match -> 304 while nothing changed), every 3 s;
- one SSE subscription per client (`GET /api/contents/{id}/events`).

Each way gets a fresh daphne (production server mode) on the bench database, and is
measured the same: bytes on the wire and requests (the clients count them), server CPU
seconds (daphne's and its PostgreSQL backends' utime + stime from /proc/<pid>/stat) and
SQL (pg_stat_database transactions and rows of the bench database, read after the
daphne exits so that its backends have published them; the committer's own
transactions are subtracted). Baseline: the seed's full-list poll."""

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.reconnect_storm import Committer, db_stats, flush_own_stats, stats_delta

CLIENTS = int(os.environ.get("BENCH_POLL_CLIENTS", "100"))
SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "10"))
INTERVAL = 3.0
# One content going through its stages (~30 s, 4 events): the channel changes less
# often than a 3 s poll asks.
EVENT_EVERY = float(os.environ.get("BENCH_POLL_EVENT_EVERY", "8"))
# PostgreSQL publishes an idle backend's statistics within 10 s: the SSE window starts
# that long after the streams are open, so that their connects are not counted in it.
SETTLE = 10.5

MODES = [
    ("before: full list every 3 s", "poll", "legacy", False),
    ("status every 3 s", "poll", "status", False),
    ("status every 3 s, conditional (304)", "poll", "status", True),
    ("one SSE subscription", "sse", None, False),
]


def run_mode(label: str, mode: str, endpoint: str | None, conditional: bool, database_url: str, channel: Any,
             user: Any, token: str) -> dict[str, Any]:
    committer = Committer(channel, user)
    servers = harness.Servers(1, database_url, "poll")
    with servers:
        path = f"/contents/channel/{channel.id}" if endpoint == "legacy" else f"/api/contents/{channel.id}/status"
        config = {"mode": mode, "port": servers.ports[0], "token": token, "count": CLIENTS, "seconds": SECONDS,
                  "interval": INTERVAL, "path": path, "conditional": conditional, "channel_id": str(channel.id),
                  "start_seq": committer.last}
        if mode == "sse":
            config.update(mark=True, seconds=SECONDS + SETTLE + 60, window=SECONDS)
        clients = harness.LoadClients(config)
        if mode == "sse":
            clients.wait("connected", 60)
            time.sleep(SETTLE)
        flush_own_stats()
        stats_before = db_stats(harness.DATABASE)
        cpu_before, backend_before = servers.cpu(), servers.backend_cpu()
        if mode == "sse":
            clients.send("mark")
            clients.wait("mark", 10)
        started = time.monotonic()
        commits = 0
        while time.monotonic() - started < SECONDS - 1:
            time.sleep(EVENT_EVERY * random.uniform(0.75, 1.25))
            committer.commit()
            commits += 1
        report = clients.wait("report", SECONDS + 60)
        clients.kill()
        if mode == "sse":  # what the window cost: after the streams were open
            report.update(totals=report["since_mark"], elapsed=report["elapsed_since_mark"])
        cpu = servers.cpu() - cpu_before
        backend = servers.backend_cpu() - backend_before
    flush_own_stats()
    sql = stats_delta(stats_before, db_stats(harness.DATABASE))
    own = commits + 1  # the committer's transactions and flush_own_stats()'s SELECT
    totals = report["totals"]
    minutes = CLIENTS * report["elapsed"] / 60  # client-minutes
    return {
        "label": label, "clients": CLIENTS, "seconds": report["elapsed"], "events": commits,
        "requests_per_client_min": totals.get("requests", 0) / minutes,
        "kib_per_client_min": (totals.get("bytes_in", 0) + totals.get("bytes_out", 0)) / 1024 / minutes,
        "kib_down_per_client_min": totals.get("bytes_in", 0) / 1024 / minutes,
        "cpu_ms_per_client_min": cpu * 1000 / minutes,
        "db_cpu_ms_per_client_min": backend * 1000 / minutes,
        "sql_xacts_per_client_min": (sql["xact_commit"] - own) / minutes,
        "rows_per_client_min": (sql["tup_returned"] + sql["tup_fetched"]) / minutes,
        "statuses": {k: v for k, v in totals.items() if k.startswith(("status_", "error_"))},
        "received_events": sum(len(c.get("first_seen", c.get("events", {}))) for c in report["clients"]) / CLIENTS,
    }


RATE_SECONDS = int(os.environ.get("BENCH_POLL_RATE_SECONDS", "2"))
FRAMEWORK_304 = "status, conditional (304), through Django (POLL_FAST_PATH=0)"


def rates(database_url: str, channel: Any, token: str) -> list[dict[str, Any]]:
    """The rate each server mode sustains for each kind of poll (bench.servers' servers
    and wrk), and the SQL of each request (counted in-process, warm): the 304 must cost
    none and run >= 10x the list's rate; the no-op (GET /v1/auth/me, the cheapest
    authenticated call) >= 1,000/s in the production server mode. The 304 is answered
    ahead of Django (core.fast_path); it is measured once more on a server with
    POLL_FAST_PATH=0, through Django, as it was before (issue 20: >= 4x that rate)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.throttling import SimpleRateThrottle

    from bench import servers as server_modes

    SimpleRateThrottle.THROTTLE_RATES = dict.fromkeys(SimpleRateThrottle.THROTTLE_RATES, "100000000/min")
    auth = {"Authorization": f"Bearer {token}"}
    status_path = f"/api/contents/{channel.id}/status"
    inprocess = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    etag = inprocess.get(status_path)["ETag"]
    kinds = [
        ("no-op (GET /v1/auth/me)", "/v1/auth/me", auth),
        ("before: full list", f"/contents/channel/{channel.id}", auth),
        ("status (200)", status_path, auth),
        ("status, conditional (304)", status_path, {**auth, "If-None-Match": etag}),
    ]
    queries = {}
    for label, path, headers in kinds:
        conditional = {"If-None-Match": headers["If-None-Match"]} if "If-None-Match" in headers else None
        inprocess.get(path, headers=conditional)
        with CaptureQueriesContext(connection) as captured:
            answer = inprocess.get(path, headers=conditional).status_code
        queries[label] = (answer, len(captured))
    rows = []
    # bench.servers' wrk for RATE_SECONDS here; its own benchmark keeps its duration.
    saved_seconds, server_modes.WRK_SECONDS = server_modes.WRK_SECONDS, RATE_SECONDS
    workdir = Path(tempfile.mkdtemp(prefix="bench-poll-rate-"))
    port = harness.free_port()
    for name, (command, env) in server_modes.server_commands(port).items():
        if "granian" not in name:  # the production server mode (bench.servers compares the others)
            continue
        server = server_modes.Server(name, command, env, port, database_url, workdir / f"{name.split()[0]}.log")
        try:
            for label, path, headers in kinds:
                measured = server_modes.wrk(server.url(path), headers, server.process.pid)
                rows.append({"server": name, "label": label, "status": queries[label][0], "queries": queries[label][1],
                             "rate": measured["rps"], "p50_ms": measured["p50"], "p99_ms": measured["p99"],
                             "cpu_ms_per_request": measured["cpu_ms"], "errors": measured["bad"]})
        finally:
            server.stop()
        server = server_modes.Server(name, command, {**env, "POLL_FAST_PATH": "0"}, port, database_url,
                                     workdir / f"{name.split()[0]}-framework.log")
        try:
            label, path, headers = kinds[-1]
            measured = server_modes.wrk(server.url(path), headers, server.process.pid)
            rows.append({"server": name, "label": FRAMEWORK_304, "status": queries[label][0], "queries": queries[label][1],
                         "rate": measured["rps"], "p50_ms": measured["p50"], "p99_ms": measured["p99"],
                         "cpu_ms_per_request": measured["cpu_ms"], "errors": measured["bad"]})
        finally:
            server.stop()
    server_modes.WRK_SECONDS = saved_seconds
    return rows


def server_modes_connections() -> int:
    from bench import servers as server_modes

    return server_modes.WRK_CONNECTIONS


def main() -> dict[str, Any]:
    with harness.bench_db() as database_url:
        user, token = harness.user_with_token("poll")
        from contents.services import channel_create

        channel = channel_create(owner=user, name="bench poll cost")
        harness.copy_contents(channel, user, 25)
        rows = [run_mode(*mode, database_url, channel, user, token) for mode in MODES]
        rate_rows = rates(database_url, channel, token)
    base = rows[0]
    print(f"poll_cost: {CLIENTS} clients of one channel (25 contents) for {SECONDS:.0f} s each way, an event every "
          f"~{EVENT_EVERY:.0f} s, one {harness.WEB_SERVER} process (production mode); per client-minute; ratio = before / this")
    harness.print_table(
        ["way", "requests", "KiB", "ratio", "server CPU ms", "ratio", "DB CPU ms", "SQL xacts", "ratio", "rows read", "events seen"],
        [[r["label"], r["requests_per_client_min"] if r["requests_per_client_min"] else "1 a session", r["kib_per_client_min"],
          harness.ratio(base["kib_per_client_min"], r["kib_per_client_min"]),
          r["cpu_ms_per_client_min"], harness.ratio(base["cpu_ms_per_client_min"], r["cpu_ms_per_client_min"]),
          r["db_cpu_ms_per_client_min"], r["sql_xacts_per_client_min"],
          harness.ratio(base["sql_xacts_per_client_min"], r["sql_xacts_per_client_min"]) if r["sql_xacts_per_client_min"] > 0 else "all gone",
          r["rows_per_client_min"], f"{r['received_events']:.1f}/{r['events']}"] for r in rows])
    for r in rows:
        print(f"  {r['label']}: answers {r['statuses']}")
    print(f"  rates (wrk, {server_modes_connections()} connections, {RATE_SECONDS} s each) per server mode; SQL per request "
          f"counted in-process, warm; ratios to the full list's rate and to the no-op's on the same server")
    table = []
    for r in rate_rows:
        same = {x["label"]: x["rate"] for x in rate_rows if x["server"] == r["server"]}
        table.append([r["server"], r["label"], str(r["status"]), r["queries"], r["rate"],
                      harness.ratio(r["rate"], same["before: full list"]), harness.ratio(r["rate"], same["no-op (GET /v1/auth/me)"]),
                      r["p50_ms"], r["p99_ms"], r["cpu_ms_per_request"], r["errors"]])
    harness.print_table(["server", "request", "answer", "SQL", "req/s", "vs list", "vs no-op", "p50 ms", "p99 ms",
                         "CPU ms/req", "non-2xx/3xx"], table)
    for server in dict.fromkeys(r["server"] for r in rate_rows):
        by_label = {r["label"]: r for r in rate_rows if r["server"] == server}
        fast, framework = by_label["status, conditional (304)"], by_label.get(FRAMEWORK_304)
        if framework:
            print(f"  {server}: the unchanged poll ahead of the framework {fast['rate']:.0f} req/s, "
                  f"{fast['cpu_ms_per_request']:.2f} ms CPU; through Django {framework['rate']:.0f} req/s, "
                  f"{framework['cpu_ms_per_request']:.2f} ms CPU: {harness.ratio(fast['rate'], framework['rate'])} the rate "
                  f"(issue 20's goal: >= 4x)")
    return {"rows": rows, "rates": rate_rows}
