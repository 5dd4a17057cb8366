"""Scaling with the channel's size: the list (first page), the status answer and a
batch of 100 statuses, for channels of 25, 1,000, 10,000 and 100,000 contents
(inserted with SQL COPY, a ~0.3 KB ai_gen_metadata each, then VACUUM ANALYZE), against one daphne in the production mode.

Each is timed warm (Redis holds the answer) and cold (the channel's and the batch's
cache entries deleted before each request, so the SQL runs; the token stays cached).
Baseline: the 25-content channel; the target is a p99 within 2x at 100,000. Then the
cold status of 25 and 100,000 contents in turns (issue 20: within 1.2x, its totals read
from the channel's counters row, contents.totals; 3.85x in the table when they were
counted). The queries each cold request runs on the contents and their totals are
captured in-process and EXPLAINed on the largest
channel: the index names of each plan are printed (a Seq Scan on contents would show)."""

import json
import os
import time
import uuid
from typing import Any

import httpx
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench import harness
from bench.reconnect_storm import percentile

SIZES = [int(x) for x in os.environ.get("BENCH_SCALING_SIZES", "25,1000,10000,100000").split(",")]
# The cold status's p99 ratio, largest channel to smallest, when the totals were counted
# (issue 20's "now", measured before contents.totals), and the goal.
STATUS_COLD_RATIO_COUNTED, STATUS_COLD_RATIO_GOAL = 3.85, 1.2
WARM = int(os.environ.get("BENCH_SCALING_WARM", "40"))
COLD = int(os.environ.get("BENCH_SCALING_COLD", "20"))
# Cold status requests to the smallest and the largest channel, in turns.
PAIRED = int(os.environ.get("BENCH_SCALING_PAIRED", "100"))


def forget(client: redis.Redis, channel_id: Any, content_ids: list[str]) -> None:
    """Every cache entry of the channel (lists, status, processing set, head, readers)
    and of the batch's contents."""
    keys = list(client.scan_iter(match=f"*{channel_id}*", count=1000))
    from contents import caching

    keys += [cache.make_key(caching.content_channel_key(uuid.UUID(i))) for i in content_ids]
    head = caching.channel_head(channel_id)
    keys += [cache.make_key(caching.content_status_key(uuid.UUID(i), head)) for i in content_ids]
    if keys:
        client.delete(*keys)


def plan_indexes(sql: str) -> tuple[list[str], list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    indexes, scans = [], []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        if node.get("Node Type") == "Seq Scan":
            scans.append(f"Seq Scan on {node.get('Relation Name')}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return indexes, scans


def main() -> dict[str, Any]:
    from rest_framework.throttling import SimpleRateThrottle

    from contents.models import Channel, Content
    from contents.services import channel_create

    SimpleRateThrottle.THROTTLE_RATES = dict.fromkeys(SimpleRateThrottle.THROTTLE_RATES, "100000000/min")
    rows: list[dict[str, Any]] = []
    plans = []
    client = redis.Redis.from_url(settings.REDIS_URL)
    with harness.bench_db() as database_url:
        user, token = harness.user_with_token("scaling")
        channels = []
        t0 = time.monotonic()
        for size in SIZES:
            channel = channel_create(owner=user, name=f"bench scaling {size}")
            harness.copy_contents(channel, user, size, short=True)
            channels.append(channel)
        with connection.cursor() as cursor:
            # As autovacuum would have by then: statistics, and the visibility map that
            # lets an index-only scan answer the counts.
            cursor.execute("VACUUM ANALYZE contents_content")
        insert_seconds = time.monotonic() - t0
        try:
            servers = harness.Servers(1, database_url, "scaling")
            with servers, httpx.Client(base_url=f"http://127.0.0.1:{servers.ports[0]}",
                                       headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                for size, channel in zip(SIZES, channels, strict=False):
                    ids = [str(i) for i in Content.objects.filter(channel=channel).order_by("?").values_list("id", flat=True)[:100]]
                    calls = {
                        "list": ("GET", f"/api/contents/channel/{channel.id}", None),
                        "status": ("GET", f"/api/contents/{channel.id}/status", None),
                        "batch of 100": ("POST", "/api/contents/status/batch", {"content_ids": ids}),
                    }
                    for name, (method, path, body) in calls.items():
                        def call() -> float:
                            t = time.perf_counter()
                            r = http.post(path, json=body) if method == "POST" else http.get(path)
                            elapsed = time.perf_counter() - t
                            r.raise_for_status()
                            return elapsed

                        cold = []
                        for _ in range(COLD):
                            forget(client, channel.id, ids)
                            cold.append(call())
                        warm = [call() for _ in range(WARM)]
                        rows.append({"size": size, "endpoint": name, "warm_p50_ms": percentile(warm, 50) * 1000,
                                     "warm_p99_ms": percentile(warm, 99) * 1000, "cold_p50_ms": percentile(cold, 50) * 1000,
                                     "cold_p99_ms": percentile(cold, 99) * 1000})
                        if size == SIZES[-1]:
                            forget(client, channel.id, ids)
                            inprocess = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
                            with CaptureQueriesContext(connection) as captured:
                                (inprocess.post(path, json.dumps(body), content_type="application/json") if method == "POST"
                                 else inprocess.get(path))
                            for query in captured:
                                if "contents_content" in query["sql"] or "contents_channeltotals" in query["sql"]:
                                    indexes, scans = plan_indexes(query["sql"])
                                    plans.append({"endpoint": name, "sql": query["sql"][:160], "indexes": indexes, "seq_scans": scans})
                # The cold status of the smallest and the largest channel in turns (which goes
                # first alternating too): the load of a shared machine weighs on both alike,
                # where the table above measures each size at its own time.
                paired: dict[int, list[float]] = {SIZES[0]: [], SIZES[-1]: []}
                pair = [(SIZES[0], channels[0]), (SIZES[-1], channels[-1])]
                for turn in range(PAIRED):
                    for size, channel in pair if turn % 2 else pair[::-1]:
                        forget(client, channel.id, [])
                        t = time.perf_counter()
                        http.get(f"/api/contents/{channel.id}/status").raise_for_status()
                        paired[size].append(time.perf_counter() - t)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM contents_content WHERE channel_id = ANY(%s)", [[c.id for c in channels]])
            Channel.objects.filter(id__in=[c.id for c in channels]).delete()
            with connection.cursor() as cursor:
                # Now, not by autovacuum during a later benchmark's pg_stat_database window.
                cursor.execute("VACUUM ANALYZE contents_content")

    print(f"scaling: latency by channel size (contents inserted with COPY in {insert_seconds:.1f} s), one {harness.WEB_SERVER} process "
          f"(production mode), warm x{WARM} / cold x{COLD} (cache entries deleted before each); ratio = p99 / p99 at {SIZES[0]}")
    base = {r["endpoint"]: r for r in rows if r["size"] == SIZES[0]}
    harness.print_table(
        ["endpoint", "contents", "warm p50 ms", "warm p99 ms", "ratio", "cold p50 ms", "cold p99 ms", "ratio"],
        [[r["endpoint"], r["size"], r["warm_p50_ms"], r["warm_p99_ms"], harness.ratio(r["warm_p99_ms"], base[r["endpoint"]]["warm_p99_ms"]),
          r["cold_p50_ms"], r["cold_p99_ms"], harness.ratio(r["cold_p99_ms"], base[r["endpoint"]]["cold_p99_ms"])]
         for r in sorted(rows, key=lambda r: (r["endpoint"], r["size"]))])
    small, large = ({q: percentile(paired[size], q) * 1000 for q in (50, 99)} for size in (SIZES[0], SIZES[-1]))
    status_ratio = large[99] / small[99]
    print(f"  cold status, {SIZES[0]} vs {SIZES[-1]:,} contents in turns x{PAIRED}: p50 {small[50]:.1f} vs {large[50]:.1f} ms "
          f"({large[50] / small[50]:.2f}x), p99 {small[99]:.1f} vs {large[99]:.1f} ms ({status_ratio:.2f}x; "
          f"{STATUS_COLD_RATIO_COUNTED}x when the totals were counted, goal within {STATUS_COLD_RATIO_GOAL}x: "
          f"{'met' if status_ratio <= STATUS_COLD_RATIO_GOAL else 'NOT met'})")
    print(f"  EXPLAIN of the queries on contents_content and contents_channeltotals of a cold request, channel of {SIZES[-1]:,}:")
    for p in plans:
        print(f"    {p['endpoint']:<13} indexes {', '.join(p['indexes']) or '-'}"
              f"{'  ' + ', '.join(p['seq_scans']) if p['seq_scans'] else ''}   [{p['sql'][:90]}...]")
    return {"rows": rows, "plans": plans, "insert_seconds": insert_seconds,
            "status_cold_paired": {"sizes": [SIZES[0], SIZES[-1]], "p50_ms": [small[50], large[50]], "p99_ms": [small[99], large[99]],
                                   "p99_ratio": status_ratio}}
