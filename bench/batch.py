"""Batch vs singles: the statuses of 20 and of 100 things in one batch call vs that
many single GETs, for contents (`POST /api/contents/status/batch` vs
`GET /api/contents/{id}`), AI jobs (`POST /v1/ai/jobs/batch-status` vs
`GET /v1/ai/jobs/{id}`) and videos (`POST /v1/videos/batch-metadata` vs
`GET /v1/videos/{id}`).

Time: wall clock of the whole call (or all the singles, one after the other over one
keep-alive connection, as a client without batch would), against one daphne in the
production mode, warm. SQL: the queries one call makes, counted exactly by running
the same request in-process under CaptureQueriesContext (cold: first call; warm:
again). Baseline: the singles; a batch should be >= 10x faster at 20 with a query
count that does not grow with the ids."""

import json
import os
import statistics
import time
from typing import Any

import httpx
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench import harness
from bench.counters import make_video

SIZES = (20, 100)
REPEAT = int(os.environ.get("BENCH_BATCH_REPEAT", "20"))


def main() -> dict[str, Any]:
    from aijobs.models import AIJob
    from contents.services import channel_create

    with harness.bench_db() as database_url:
        user, token = harness.user_with_token("batch")
        channel = channel_create(owner=user, name="bench batch")
        harness.copy_contents(channel, user, 100)
        from contents.models import Content

        content_ids = [str(i) for i in Content.objects.filter(channel=channel).values_list("id", flat=True)]
        videos = [make_video(user, f"bench batch {i}") for i in range(100)]
        jobs = AIJob.objects.bulk_create([AIJob(owner=user, kind="glitch", video=videos[i], cost=10) for i in range(100)])
        kinds = {
            "contents": ("/api/contents/status/batch", "content_ids", content_ids, "/api/contents/{}"),
            "AI jobs": ("/v1/ai/jobs/batch-status", "job_ids", [str(j.id) for j in jobs], "/v1/ai/jobs/{}"),
            "videos": ("/v1/videos/batch-metadata", "video_ids", [str(v.id) for v in videos], "/v1/videos/{}"),
        }
        auth = {"Authorization": f"Bearer {token}"}
        # The in-process calls share the throttle history (in Redis) with the daphne's.
        from rest_framework.throttling import SimpleRateThrottle

        SimpleRateThrottle.THROTTLE_RATES = dict.fromkeys(SimpleRateThrottle.THROTTLE_RATES, "100000000/min")
        inprocess = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")

        def queries(calls: list[tuple[str, str, Any]]) -> int:
            with CaptureQueriesContext(connection) as captured:
                for method, path, body in calls:
                    response = (inprocess.post(path, json.dumps(body), content_type="application/json") if method == "POST"
                                else inprocess.get(path))
                    assert response.status_code == 200, (path, response.status_code, response.content[:300])
            return len(captured)

        rows = []
        servers = harness.Servers(1, database_url, "batch")
        with servers, httpx.Client(base_url=f"http://127.0.0.1:{servers.ports[0]}", headers=auth, timeout=30) as http:
            for kind, (batch_path, field, ids, single_path) in kinds.items():
                for size in SIZES:
                    chosen = ids[:size]
                    batch_call = [("POST", batch_path, {field: chosen})]
                    single_calls = [("GET", single_path.format(i), None) for i in chosen]
                    cold = {"batch": queries(batch_call), "singles": queries(single_calls)}
                    warm = {"batch": queries(batch_call), "singles": queries(single_calls)}
                    times: dict[str, list[float]] = {"batch": [], "singles": []}
                    for name, calls in (("batch", batch_call), ("singles", single_calls)):
                        # A round of singles is `size` requests: fewer rounds of them, same order of requests.
                        rounds = REPEAT if name == "batch" else max(2, REPEAT * 4 // size)
                        for attempt in range(rounds + 1):
                            t0 = time.perf_counter()
                            for method, path, body in calls:
                                r = http.post(path, json=body) if method == "POST" else http.get(path)
                                r.raise_for_status()
                            if attempt >= 1:  # one warm-up
                                times[name].append(time.perf_counter() - t0)
                    batch_ms = statistics.median(times["batch"]) * 1000
                    singles_ms = statistics.median(times["singles"]) * 1000
                    rows.append({"kind": kind, "ids": size, "batch_ms": batch_ms, "singles_ms": singles_ms,
                                 "speedup": singles_ms / batch_ms, "batch_queries_cold": cold["batch"],
                                 "batch_queries_warm": warm["batch"], "singles_queries_cold": cold["singles"],
                                 "singles_queries_warm": warm["singles"]})
    print(f"batch: one batch call vs that many single GETs, one keep-alive connection, one daphne (production mode), "
          f"median of {REPEAT} batch calls (of 4-2 rounds of singles); SQL queries per call counted in-process (cold / warm); baseline: the singles")
    harness.print_table(
        ["what", "ids", "batch ms", "singles ms", "batch faster", "batch SQL cold/warm", "singles SQL cold/warm"],
        [[r["kind"], r["ids"], r["batch_ms"], r["singles_ms"], f"{r['speedup']:.1f}x",
          f"{r['batch_queries_cold']}/{r['batch_queries_warm']}", f"{r['singles_queries_cold']}/{r['singles_queries_warm']}"]
         for r in rows])
    return {"rows": rows}
