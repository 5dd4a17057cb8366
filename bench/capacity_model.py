"""docs/scaling.md's arithmetic: from the unit costs `python -m bench unit_costs` last
measured (bench/results.json) to hosts, Redis shards and PostgreSQL for a target load.

    .venv/bin/python -m bench.capacity_model [SUBSCRIBERS EVENTS_PER_S]

No Django, no measurement: it reads results.json and prints the model for the three
ways a load balancer may place a channel's streams (ASSUMPTIONS below say the rest).
What the model does not take from results.json it takes from the bench figures named
beside each constant."""

import json
import math
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"

ASSUMPTIONS = {
    "subscribers": 1_000_000,
    "events_per_s": 10_000,  # spread evenly over the channels
    "subscribers_per_channel": 100,
    "streaming_share": 0.9,  # half SSE, half WebSocket; the rest poll
    "poll_every_s": 5.0,  # the conditional status poll of the seeds' hooks (3-5 s)
    # Centrifugo's anchor: 200,000 connects/disconnects a minute for 1,000,000 (a stream lasts 5 minutes).
    "connects_per_subscriber_s": 200_000 / 60 / 1_000_000,
    "heartbeat_s": 10.0,  # REALTIME_HEARTBEAT_SECONDS
    "host_vcpus": 16,
    "host_gib": 32,
    "cpu_target": 0.6,  # what a host may use, leaving room for a reconnect storm after a deploy
    "redis_target": 0.5,  # of one Redis core (it is single-threaded)
}
# Not measured by unit_costs (their sources):
SUBSCRIBE_CPU_MS = 9.0  # a ticket and a WebSocket subscribe (issue 20: 6.3 ms + 2.6 ms per ticket)
SUBSCRIBE_SQL = 3.4  # bench reconnect_storm: transactions per reconnect
KIB_WS, KIB_SSE = 181, 97  # bench capacity: RSS per idle WebSocket / SSE stream, one granian worker
PROCESS_MIB = 175  # bench capacity: a granian worker's RSS with no stream
SQL_PER_EVENT_PIPELINE = 1.5  # the pipeline's own transactions per event (a content's submit, claim, job rows: ~6 for 4 events), estimated
WAL_KIB_PER_EVENT = 5  # the event row, the content's row rewritten, the stream's and the totals' rows, estimated


def units(results: dict[str, Any]) -> dict[str, float]:
    figures = results["scenarios"]["unit_costs"]["figures"]
    u = figures["units"]
    requests = {row["label"]: row for row in figures["requests"]}
    per_process = [u[k] for k in ("cpu_ms_per_event_per_process", "spread_cpu_ms_per_event_per_process") if k in u]
    calibration = figures.get("redis_calibration") or {"round_trip_us": 10.0, "script_of_3_us": 14.0, "connection_us": 42.0}
    return {
        "poll_304_ms": requests["status, unchanged (304)"]["cpu_ms"],
        "poll_200_ms": requests["status (200)"]["cpu_ms"],
        "idle_us_per_stream_s": u["idle_cpu_us_per_stream_s"],
        "delivery_us": u["cpu_us_per_delivery"],
        "event_per_process_ms": sum(per_process) / len(per_process),
        "catch_up_read_ms": figures["catch_up_read"]["cpu_ms"],
        "layer_cpu_us_low_rate": u["layer_redis_cpu_us_per_event"],
        "cache_round_trips_per_event": u["cache_redis_round_trips_per_event"],
        "rt_us": calibration["round_trip_us"],
        "script_us": calibration["script_of_3_us"],
        "connection_us": calibration["connection_us"],
    }


def processes_reached(streamers: float, processes: float) -> float:
    """Processes holding at least one of a channel's `streamers` streams placed at random."""
    return processes * (1 - (1 - 1 / processes) ** streamers) if processes > 1 else 1.0


def layer_calls(f: float) -> float:
    """Channel-layer calls per event reaching f processes (bench unit_costs: 7 + 10 per process)."""
    return 7 + 10 * f


def layer_cpu_busy_us(f: float, x: dict[str, float]) -> float:
    """A busy shard's CPU per event, from redis-benchmark's per-call costs: the publisher's
    connection, its HELLO, PING, ZREMRANGEBYSCORE, ZRANGE and pipeline, its script (three
    commands inside per process: what a script of three costs beyond a round trip) and a
    pipelined ZREMRANGEBYSCORE per process; each process's pop, backup and ack and its
    cleanup script."""
    extra_per_script = x["script_us"] - x["rt_us"]
    return (x["connection_us"] + 5 * x["rt_us"] + x["rt_us"] + f * extra_per_script + f * 2
            + f * (3 * x["rt_us"] + x["script_us"]))


def model(a: dict[str, Any], x: dict[str, float], placement: str) -> dict[str, Any]:
    streamers = a["subscribers_per_channel"] * a["streaming_share"]
    channels = a["subscribers"] / a["subscribers_per_channel"]
    streams = a["subscribers"] * a["streaming_share"]
    per_channel_rate = a["events_per_s"] / channels
    polls = a["subscribers"] * (1 - a["streaming_share"]) / a["poll_every_s"]
    connects = a["subscribers"] * a["connects_per_subscriber_s"]
    # A poll sees a new head (a 200) when its channel had an event since the last poll.
    changed = 1 - math.exp(-per_channel_rate * a["poll_every_s"])
    poll_ms = changed * x["poll_200_ms"] + (1 - changed) * x["poll_304_ms"]
    processes = 1.0
    for _ in range(50):  # the processes needed depend on f, which depends on the processes
        if placement == "any process":
            f = processes_reached(streamers, processes)
        elif placement == "host by channel":
            f = processes_reached(streamers, a["host_vcpus"])
        else:  # process by channel
            f = 1.0
        cores = {
            "deliveries": a["events_per_s"] * streamers * x["delivery_us"] / 1e6,
            "events x processes reached": a["events_per_s"] * f * x["event_per_process_ms"] / 1e3,
            "idle streams": streams * x["idle_us_per_stream_s"] / 1e6,
            "heartbeat reads": channels * f / a["heartbeat_s"] * x["catch_up_read_ms"] / 1e3,
            "polls": polls * poll_ms / 1e3,
            "subscribes": connects * SUBSCRIBE_CPU_MS / 1e3,
        }
        vcpus = sum(cores.values()) / a["cpu_target"]
        if abs(vcpus - processes) < 1:
            break
        processes = vcpus
    hosts = math.ceil(vcpus / a["host_vcpus"])
    memory_gib = (streams / 2 * (KIB_WS + KIB_SSE) / 2**20) + hosts * a["host_vcpus"] * PROCESS_MIB / 1024
    layer_busy = a["events_per_s"] * layer_cpu_busy_us(f, x) / 1e6
    # Measured at 14 events a second on an otherwise idle Redis: an upper bound.
    layer_low = a["events_per_s"] * (x["layer_cpu_us_low_rate"] + (f - 2) * 80) / 1e6
    heartbeat_sql = channels * f * 2 / a["heartbeat_s"]
    return {
        "placement": placement, "f": f, "cores": cores, "vcpus": vcpus, "hosts": hosts,
        "streams_per_process": streams / vcpus, "memory_gib": memory_gib, "memory_gib_per_host": memory_gib / hosts,
        "polls_per_s": polls, "poll_share_200": changed,
        "deliveries_per_s": a["events_per_s"] * streamers,
        "layer_calls_per_s": a["events_per_s"] * layer_calls(f),
        "layer_connections_per_s": a["events_per_s"] * 1.25,
        "layer_shards": (math.ceil(layer_busy / a["redis_target"]), math.ceil(layer_low / a["redis_target"])),
        "cache_round_trips_per_s": a["events_per_s"] * x["cache_round_trips_per_event"] + polls * (changed * 5 + (1 - changed)),
        "sql": {"event writes": a["events_per_s"] * (1 + SQL_PER_EVENT_PIPELINE), "heartbeat reads": heartbeat_sql,
                "subscribes": connects * SUBSCRIBE_SQL, "polls (cache misses)": polls * 0.05},
        "wal_mib_s": a["events_per_s"] * WAL_KIB_PER_EVENT / 1024,
        "outbox_rows_24h": a["events_per_s"] * 86400,
        "db_client_connections": vcpus * 10,
    }


def checks(results: dict[str, Any], x: dict[str, float]) -> list[tuple[str, float, float]]:
    """(what, predicted from the units, measured) at the points measurable here."""
    scenarios = results["scenarios"]
    out = []
    units_figures = scenarios["unit_costs"]["figures"]
    spread = units_figures.get("spread")
    if spread:
        out.append((f"channel-layer calls per event, stream over {spread['processes']} processes",
                    layer_calls(spread["processes"]) + 0.25 * 4, spread["layer_redis_calls_per_event"]))
    cluster = (scenarios.get("cluster_units") or {}).get("figures")
    if cluster and "per_event" in cluster:
        per_host = cluster["spread"]
        e = cluster["per_event"]
        for host, held in per_host.items():
            out.append((f"two hosts: web CPU ms per event on {host} ({held} streams)",
                        x["event_per_process_ms"] + held * x["delivery_us"] / 1000, e["cpu_ms"][host]["web"]))
            idle = (cluster["idle"]["cpu"][host]["web"] / cluster["idle"]["seconds"]
                    - cluster["no_stream"]["cpu"][host]["web"] / cluster["no_stream"]["seconds"])
            out.append((f"two hosts: idle web CPU ms/s on {host}", held * x["idle_us_per_stream_s"] / 1000, idle * 1000))
        # One host's formula, plus what a second shard adds: a connection (HELLO, PING), a
        # pipeline (MULTI, EXEC) and a script (EVAL); a user-stream publish for a quarter of the events.
        out.append(("two hosts: channel-layer calls per event, both shards", layer_calls(2) + 5 + 0.25 * 4,
                    sum(v for k, v in e["redis_calls"].items() if k.startswith("channels"))))
        out.append(("two hosts: cache Redis calls per event", units_figures["units"]["cache_redis_calls_per_event"],
                    e["redis_calls"]["redis"]))
        out.append(("two hosts: SQL transactions per event", 1.0, e["xacts"]))
    fanout = (scenarios.get("fanout") or {}).get("figures")
    if fanout:
        row = next((r for r in fanout["rows"] if r["live"] == 1000), None)
        if row:
            # Two server processes; the clients, PostgreSQL and Redis share the 2 cores: one core for the servers.
            per_event_ms = 2 * x["event_per_process_ms"] + 1000 * x["delivery_us"] / 1000
            out.append(("one host: fan-out deliveries/s at 1,000 subscribers, servers on one core",
                        1000 / per_event_ms * 1000, row["deliveries_per_s"]))
    capacity = (scenarios.get("capacity") or {}).get("figures")
    if capacity:
        for row in capacity["rows"]:
            kib = units_figures["units"]["kib_per_stream"]
            out.append((f"one host: RSS MiB holding {row['held']:,} idle {row['kind']} (at unit_costs' {kib:.0f} KiB, half of each)",
                        row["idle_rss_mib"] + row["held"] * kib / 1024, row["rss_mib"]))
    return out


def main(argv: list[str]) -> None:
    a = dict(ASSUMPTIONS)
    if len(argv) >= 2:
        a["subscribers"], a["events_per_s"] = int(argv[0]), int(argv[1])
    results = json.loads(RESULTS.read_text())
    x = units(results)
    print(f"capacity model: {a['subscribers']:,} subscribers ({a['streaming_share']:.0%} streaming, the rest polling every "
          f"{a['poll_every_s']:.0f} s), {a['subscribers_per_channel']} a channel, {a['events_per_s']:,} events/s, "
          f"{a['subscribers'] * a['connects_per_subscriber_s']:,.0f} subscribes/s; hosts of {a['host_vcpus']} vCPU used to {a['cpu_target']:.0%}")
    print("  units (results.json, unit_costs): " + ", ".join(f"{k} {v:.3g}" for k, v in x.items()))
    for placement in ("any process", "host by channel", "process by channel"):
        m = model(a, x, placement)
        print(f"\n  {placement}: each event reaches f = {m['f']:.1f} processes")
        print("    web cores: " + ", ".join(f"{k} {v:,.0f}" for k, v in m["cores"].items())
              + f"; total {sum(m['cores'].values()):,.0f} -> {m['vcpus']:,.0f} vCPU = {m['hosts']} hosts "
              f"({m['streams_per_process']:,.0f} streams a process; memory {m['memory_gib']:,.0f} GiB, "
              f"{m['memory_gib_per_host']:.1f} a host)")
        print(f"    channel layer: {m['layer_calls_per_s']:,.0f} calls/s, {m['layer_connections_per_s']:,.0f} connections opened/s, "
              f"shards at {a['redis_target']:.0%} of a core: {m['layer_shards'][0]} (busy, calibrated) to "
              f"{m['layer_shards'][1]} (CPU per event as measured at 14/s)")
        print(f"    cache Redis: {m['cache_round_trips_per_s']:,.0f} round trips/s ({m['polls_per_s']:,.0f} polls/s, "
              f"{m['poll_share_200']:.0%} of them a 200)")
        print("    PostgreSQL transactions/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in m["sql"].items())
              + f"; WAL ~{m['wal_mib_s']:.0f} MiB/s; outbox rows kept 24 h: {m['outbox_rows_24h'] / 1e6:,.0f} M; "
              f"pool client connections (10 a process): {m['db_client_connections']:,.0f}")

    print("\n  checks at the points measured here (predicted from the units; measured; measured / predicted):")
    for what, predicted, measured in checks(results, x):
        print(f"    {what}: {predicted:,.1f}; {measured:,.1f}; {measured / predicted:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
