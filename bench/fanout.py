"""Fan-out: one event to 100, 1,000 and 5,000 subscribers of a channel (SSE and
WebSocket, half each) over two daphne processes (production mode). Subscribers are
added in steps (the reconnect storm's client processes, several so that no one
client process is the bottleneck); at each step:

- single events, one at a time: the time from commit until the last subscriber has it,
  and the per-delivery commit -> receipt p50/p99;
- a burst of events committed back to back: events/s and deliveries/s sustained until
  every subscriber has them all.

Baseline: the 100-subscriber step. 5,000 sockets on 2 cores is heavy: a step whose
subscribers do not all connect within its budget goes on with those that did, and
the table says how many that was (BENCH_FANOUT_MAX bounds it)."""

import os
import threading
import time
from typing import Any

from bench import harness
from bench.reconnect_storm import ClientProcess, Committer, bench_setup, percentile, raise_fd_limit

STEPS = [int(x) for x in os.environ.get("BENCH_FANOUT_STEPS", "100,1000,5000").split(",")]
MAX = int(os.environ.get("BENCH_FANOUT_MAX", "5000"))
SINGLES = int(os.environ.get("BENCH_FANOUT_EVENTS", "10"))
BURST = int(os.environ.get("BENCH_FANOUT_BURST", "30"))
PER_PROCESS = 1250


def ask_all(processes: list[ClientProcess], cmd: str, needs: list[int] | None = None, **arguments: Any) -> list[dict[str, Any]]:
    answers: list[Any] = [None] * len(processes)

    def one(i: int) -> None:
        answers[i] = processes[i].ask(cmd, **arguments, **({"need": needs[i]} if needs else {}))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(processes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def main() -> dict[str, Any]:
    raise_fd_limit()
    rows = []
    with harness.bench_db() as database_url:
        user, token, channel = bench_setup("fanout")
        committer = Committer(channel, user)
        servers = harness.Servers(2, database_url, "fanout")
        processes: list[ClientProcess] = []
        started_at_step: list[int] = []
        phases: list[dict[str, Any]] = []
        try:
            servers.start()
            total = 0
            for step in (s for s in STEPS if s <= MAX):
                t0 = time.time()
                new: list[ClientProcess] = []
                while total < step:
                    count = min(PER_PROCESS, step - total)
                    new.append(ClientProcess(ports=servers.ports, channel_id=str(channel.id), token=token, count=count,
                                             log_path=servers.workdir / f"clients-{len(processes) + len(new)}.log",
                                             ramp_seconds=0.004))
                    total += count
                processes += new
                started_at_step += [len(phases)] * len(new)
                budget = min(30, max(25, step / 100))
                lives = [a["live"] for a in ask_all(processes, "wait_live", timeout=budget)]
                if sum(lives) < step:  # bounded: those that did not connect in the budget stop trying
                    lives = [a["live"] for a in ask_all(processes, "drop_offline", timeout=10)]
                live = sum(lives)
                connect_seconds = time.time() - t0
                rss_before = servers.rss_kib()
                time.sleep(1)
                singles, to_last = [], []
                # Bounded work per step: about 10,000 single deliveries and 20,000 in the burst.
                burst = max(3, min(BURST, 20000 // step))
                for _ in range(max(3, min(SINGLES, 10000 // step))):
                    seq = committer.commit()
                    answers = ask_all(processes, "wait_current", lives, last=seq, timeout=20)
                    to_last.append(max(a["t"] for a in answers) - committer.commit_times[seq])
                    singles.append(seq)
                    time.sleep(0.2)
                burst_start = time.time()
                for _ in range(burst):
                    committer.commit()
                answers = ask_all(processes, "wait_current", lives, last=committer.last, timeout=60)
                burst_seconds = max(a["t"] for a in answers) - burst_start
                current = sum(a["current"] for a in answers)
                phases.append({"step": step, "live": live, "connect_seconds": connect_seconds, "singles": singles,
                               "to_last": to_last, "burst_seconds": burst_seconds, "burst": burst, "current": current,
                               "rss_mib": servers.rss_kib() / 1024, "rss_before_mib": rss_before / 1024,
                               "cpu": servers.cpu()})
                print(f"  step {step}: {live} live in {connect_seconds:.1f} s; time to last p50 "
                      f"{percentile(to_last, 50) * 1000:.0f} ms; burst of {burst} in {burst_seconds:.2f} s", flush=True)
            reports = [p.ask("report", timeout=120)["subscribers"] for p in processes]
        finally:
            for p in processes:
                p.close()
            servers.stop()
        committer.cleanup()

    for index, phase in enumerate(phases):
        present = [sub for p, reps in enumerate(reports) if started_at_step[p] <= index for sub in reps]
        wanted = set(phase["singles"])
        deliveries = [t - committer.commit_times[seq] for sub in present for seq, _, _, t in sub["events"] if seq in wanted]
        n = phase["live"]
        rows.append({
            "subscribers": phase["step"], "live": n, "connect_s": phase["connect_seconds"],
            "to_last_p50_ms": percentile(phase["to_last"], 50) * 1000, "to_last_max_ms": max(phase["to_last"]) * 1000,
            "delivery_p50_ms": percentile(deliveries, 50) * 1000, "delivery_p99_ms": percentile(deliveries, 99) * 1000,
            "burst": phase["burst"], "events_per_s": phase["burst"] / phase["burst_seconds"],
            "deliveries_per_s": phase["burst"] * n / phase["burst_seconds"],
            "burst_current": phase["current"], "rss_mib": phase["rss_mib"],
        })
    base = rows[0]
    print(f"fanout: one channel, subscribers half SSE half WebSocket over 2 {harness.WEB_SERVER} processes (production mode); up to {SINGLES} single "
          f"events per step (time until the last subscriber has each), then a burst (events committed back to back); "
          f"baseline {base['subscribers']} subscribers")
    harness.print_table(
        ["subscribers", "live", "connect s", "to last p50 ms", "max ms", "ratio", "delivery p50 ms", "p99 ms",
         "burst", "events/s", "deliveries/s", "ratio", "servers RSS MiB"],
        [[r["subscribers"], r["live"], r["connect_s"], r["to_last_p50_ms"], r["to_last_max_ms"],
          harness.ratio(r["to_last_p50_ms"], base["to_last_p50_ms"]), r["delivery_p50_ms"], r["delivery_p99_ms"],
          r["burst"], r["events_per_s"], r["deliveries_per_s"], harness.ratio(r["deliveries_per_s"], base["deliveries_per_s"]),
          r["rss_mib"]] for r in rows])
    return {"rows": rows}
