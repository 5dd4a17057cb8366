"""Writes bench/RESULTS.md (the tables as printed, with a short reading of each) and
bench/results.png (latency vs channel size, fan-out time vs subscribers, poll cost)
from bench/results.json. `python -m bench.report` renders again without running."""

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ORDER = ["poll_cost", "freshness", "fanout", "batch", "counters", "scaling", "capacity", "servers", "realtime_latency",
         "reconnect_storm", "soak", "partial_results", "stream_memory"]
TITLES = {
    "poll_cost": "1. Poll cost per client-minute", "freshness": "2. Freshness (commit to client)",
    "fanout": "3. Fan-out over two server processes", "batch": "4. Batch vs singles", "counters": "5. Counters",
    "scaling": "6. Scaling with channel size", "capacity": "7. Capacity of one process",
    "realtime_latency": "Realtime latency (SSE / WebSocket vs the channel layer)", "reconnect_storm": "Reconnect storm",
    "soak": "Soak", "partial_results": "Partial AI results (rows, events, latency)",
    "stream_memory": "Memory per idle stream (every server; 20,000 held by one host)", "servers": "Server modes (daphne, uvicorn, granian)",
    "unit_costs": "Unit costs (the capacity model's, docs/scaling.md)",
    "cluster_units": "Two hosts (the capacity model's check, docs/scaling.md)",
}


def reading(name: str, figures: dict[str, Any] | None, output: str) -> str:
    """A short reading, from the figures where the benchmark returns them."""
    f = figures or {}
    try:
        if name == "poll_cost":
            rows = {r["label"]: r for r in f["rows"]}
            before, cond, sse = rows["before: full list every 3 s"], rows["status every 3 s, conditional (304)"], rows["one SSE subscription"]
            plain = rows["status every 3 s"]
            text = (f"Per client-minute the seed's full-list poll moves {before['kib_per_client_min']:.0f} KiB and costs "
                    f"{before['cpu_ms_per_client_min']:.0f} ms of server CPU; the status endpoint {plain['kib_per_client_min']:.0f} KiB / "
                    f"{plain['cpu_ms_per_client_min']:.0f} ms; the conditional poll {cond['kib_per_client_min']:.0f} KiB / "
                    f"{cond['cpu_ms_per_client_min']:.0f} ms; one SSE stream {sse['kib_per_client_min']:.1f} KiB / "
                    f"{sse['cpu_ms_per_client_min']:.1f} ms. Every poll is answered from Redis (SQL runs once per change, "
                    f"shared by all clients), so a poll's cost is the request itself, whatever it answers: the three polls "
                    f"cost about the same CPU, and only the stream is much cheaper.")
            rates = f.get("rates") or []
            for server in dict.fromkeys(r["server"] for r in rates):
                same = {r["label"]: r for r in rates if r["server"] == server}
                noop, listed, cond304 = same["no-op (GET /v1/auth/me)"], same["before: full list"], same["status, conditional (304)"]
                text += (f" {server}: no-op {noop['rate']:.0f} req/s ({noop['cpu_ms_per_request']:.1f} ms CPU each), the 304 "
                         f"{cond304['rate']:.0f} req/s with {cond304['queries']} SQL = {cond304['rate'] / listed['rate']:.1f}x the list's "
                         f"{listed['rate']:.0f} req/s.")
            return text
        if name == "freshness":
            r = f["rows"]
            poll, sse, ws = r["poll 3 s (conditional status)"], r["SSE"], r["WebSocket"]
            return (f"A 3 s poll learns of a change {poll['p50_ms']:.0f} ms after its commit at the median and "
                    f"{poll['p99_ms']:.0f} ms at p99 (half the period and the whole of it, as expected); a pushed client in "
                    f"{sse['p50_ms']:.0f} / {sse['p99_ms']:.0f} ms (SSE) and {ws['p50_ms']:.0f} / {ws['p99_ms']:.0f} ms (WebSocket).")
        if name == "fanout":
            parts = [f"{r['live']:,}"
                     f"{'' if r['live'] == r['subscribers'] else ' (of ' + format(r['subscribers'], ',') + ': the connect budget ran out)'}"
                     f" subscribers: last one after {r['to_last_p50_ms']:.0f} ms (p50 of single events), "
                     f"delivery p99 {r['delivery_p99_ms']:.0f} ms, {r['deliveries_per_s']:,.0f} deliveries/s sustained"
                     for r in f["rows"]]
            return "; ".join(parts) + ". Each server process receives an event once from Redis and fans it out to its own connections."
        if name == "batch":
            parts = [f"{r['kind']} x{r['ids']}: {r['speedup']:.0f}x faster, {r['batch_queries_warm']} queries warm "
                     f"({r['batch_queries_cold']} cold) vs {r['singles_queries_warm']} ({r['singles_queries_cold']})" for r in f["rows"]]
            return "; ".join(parts) + "."
        if name == "scaling":
            rows = f["rows"]
            sizes = sorted({r["size"] for r in rows})
            parts = []
            for endpoint in ("list", "status", "batch of 100"):
                small = next(r for r in rows if r["endpoint"] == endpoint and r["size"] == sizes[0])
                big = next(r for r in rows if r["endpoint"] == endpoint and r["size"] == sizes[-1])
                parts.append(f"{endpoint}: cold p99 {small['cold_p99_ms']:.1f} -> {big['cold_p99_ms']:.1f} ms "
                             f"({big['cold_p99_ms'] / small['cold_p99_ms']:.2f}x), warm p99 {small['warm_p99_ms']:.1f} -> "
                             f"{big['warm_p99_ms']:.1f} ms")
            seq = [p for p in f.get("plans", []) if p["seq_scans"]]
            return ("From 25 to 100,000 contents: " + "; ".join(parts) + " (the 25-content channel's batch holds "
                    "its 25 ids, the others 100, which is most of the warm batch's ratio). The status answer's exact "
                    "totals are a COUNT over the channel's (channel, status) index entries: the one part that grows "
                    "with the channel. "
                    + ("Every query used an index." if not seq else "Every query on contents used an index; sequential scans: "
                       + ", ".join(sorted({x for p in seq for x in p["seq_scans"]})) + " (the channels table, in the access check)."))
        if name == "capacity":
            return "; ".join(f"{r['kind']}: {r['held']:,} of {r['target']:,} held (stopped by {r['stopped_by']}), "
                             f"{r['rate']:.0f} authenticated connects/s, {r['kib_per_conn']:.0f} KiB per connection, "
                             f"/healthz {r['healthz_ms']:.1f} ms while holding them" for r in f["rows"]) + "."
    except (KeyError, StopIteration, TypeError, ZeroDivisionError) as error:
        return f"(no reading: {type(error).__name__} {error})"
    return {
        "counters": "Views and likes against the no-op baseline on one daphne; the exact totals are checked after the load.",
        "realtime_latency": "What daphne, the consumer and the framing add to the bare channel-layer round trip.",
        "reconnect_storm": "Both daphnes restarted under 1,000 subscribers: every client back and current, nothing lost or twice.",
        "servers": "The same application under daphne (dev and DEBUG off), uvicorn and granian with a worker per core (the production mode).",
        "soak": "Idle streams stay open under the production heartbeat, every event reaches every client, memory stays flat.",
    }.get(name, "")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results.get("scenarios", {})
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    scaling = (s.get("scaling") or {}).get("figures")
    ax = axes[0]
    if scaling:
        for endpoint, color in (("list", "C0"), ("status", "C1"), ("batch of 100", "C2")):
            rows = sorted((r for r in scaling["rows"] if r["endpoint"] == endpoint), key=lambda r: r["size"])
            ax.plot([r["size"] for r in rows], [r["cold_p99_ms"] for r in rows], "o-", color=color, label=f"{endpoint} cold p99")
            ax.plot([r["size"] for r in rows], [r["warm_p99_ms"] for r in rows], "o--", color=color, alpha=0.6, label=f"{endpoint} warm p99")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    ax.set_title("Latency vs channel size")
    ax.set_xlabel("contents in the channel")
    ax.set_ylabel("ms")
    fanout = (s.get("fanout") or {}).get("figures")
    ax = axes[1]
    if fanout:
        rows = fanout["rows"]
        ax.plot([r["live"] for r in rows], [r["to_last_p50_ms"] for r in rows], "o-", label="commit -> last subscriber (p50)")
        ax.plot([r["live"] for r in rows], [r["delivery_p99_ms"] for r in rows], "s--", label="per-delivery p99")
        ax.axhline(50, color="grey", lw=0.8, ls=":", label="50 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_title("Fan-out time vs subscribers (2 server processes)")
    ax.set_xlabel("subscribers")
    ax.set_ylabel("ms")
    poll = (s.get("poll_cost") or {}).get("figures")
    ax = axes[2]
    if poll:
        rows = poll["rows"]
        labels = [r["label"].replace(" every 3 s", "\nevery 3 s").replace(", conditional", "\nconditional") for r in rows]
        x = range(len(rows))
        base = rows[0]
        metrics = [("kib_per_client_min", "KiB"), ("cpu_ms_per_client_min", "server CPU ms"), ("sql_xacts_per_client_min", "SQL xacts")]
        for k, (key, name) in enumerate(metrics):
            values = [max(r[key] / base[key] * 100, 0.1) if base[key] else 0.1 for r in rows]
            bars = ax.bar([i + (k - 1) * 0.27 for i in x], values, 0.27, label=name)
            ax.bar_label(bars, labels=[f"{v:.0f}" if v >= 1 else f"{v:.1f}" for v in values], fontsize=6)
        ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("% of the seed's full-list poll, per client-minute (log)")
        ax.legend(fontsize=8)
    ax.set_title("Poll cost per client-minute")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: dict[str, Any]) -> None:
    run = results.get("run", {})
    machine = run.get("machine", {})
    lines = ["# Benchmark results", ""]
    lines.append(f"`make bench`, {run.get('date', '?')}, {run.get('seconds', 0):.0f} s in all. Machine: "
                 f"{machine.get('cpus', '?')} CPUs ({machine.get('cpu', '?')}), {machine.get('memory', '?')} RAM, Linux "
                 f"{machine.get('kernel', '?')}, Python {machine.get('python', '?')}; load average before the run "
                 f"{machine.get('load_before', '?')}. Everything on loopback: PostgreSQL, Redis, the daphnes and the "
                 f"client processes share the CPUs. Settings: {run.get('settings') or 'defaults'}.")
    lines += ["", "Written by `bench/report.py` from `bench/results.json`; the plot is `bench/results.png`.", "",
              "![results](results.png)", ""]
    scenarios = results.get("scenarios", {})
    for name in ORDER + [n for n in scenarios if n not in ORDER]:
        entry = scenarios.get(name)
        if not entry:
            continue
        lines += [f"## {TITLES.get(name, name)}", "", f"`python -m bench {name}`: {entry['seconds']:.0f} s"
                  + (f"; FAILED: {entry['error']}" if entry.get("error") else ""), "", "```", entry["output"].rstrip(), "```", "",
                  reading(name, entry.get("figures"), entry["output"]), ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines).rstrip() + "\n")
    plot(results, HERE / "results.png")


if __name__ == "__main__":
    render(json.loads((HERE / "results.json").read_text()))
