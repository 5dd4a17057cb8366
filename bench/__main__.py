"""`make bench`: every benchmark, each printing its figures and their ratio to a
baseline measured in the same run.

`python -m bench [name ...]` runs some; each run's printed tables and figures (the
dict a benchmark returns) are merged into bench/results.json, from which
bench/report.py writes bench/RESULTS.md and bench/results.png."""

import contextlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import TextIO

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A local measurement on plain http (its servers run with DEBUG off all the same).
os.environ.setdefault("DJANGO_ENV", "development")

import django

django.setup()

import logging  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs every request at INFO

from bench import (  # noqa: E402
    batch,
    capacity,
    cluster_units,
    counters,
    fanout,
    freshness,
    partial_results,
    poll_cost,
    realtime_latency,
    reconnect_storm,
    report,
    scaling,
    servers,
    soak,
    stream_memory,
    unit_costs,
)

BENCHMARKS = {
    "poll_cost": poll_cost.main,
    "freshness": freshness.main,
    "fanout": fanout.main,
    "batch": batch.main,
    "counters": counters.main,
    "scaling": scaling.main,
    "capacity": capacity.main,
    "realtime_latency": realtime_latency.main,
    "reconnect_storm": reconnect_storm.main,
    "servers": servers.main,
    "soak": soak.main,
    "partial_results": partial_results.main,
    # 20,000 idle streams held by one host for 10 minutes (BENCH_STREAM_MEMORY_HOLD_SECONDS).
    "stream_memory": stream_memory.main,
    # Run by name only: the capacity model's units (docs/scaling.md), ~4 min, past make bench's 10,
    # and its check on the cluster of scripts/cluster.py (root only, ~3 min).
    "unit_costs": unit_costs.main,
    "cluster_units": cluster_units.main,
}
BY_NAME_ONLY = {"unit_costs", "cluster_units"}
RESULTS = Path(__file__).resolve().parent / "results.json"


class Tee(io.TextIOBase):
    """stdout, also kept: the tables as printed go into results.json."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        return self.kept.write(text)

    def flush(self) -> None:
        self.stream.flush()


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next(line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "memory": memory, "kernel": platform.release(),
            "python": platform.python_version(), "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> None:
    names = sys.argv[1:] or [name for name in BENCHMARKS if name not in BY_NAME_ONLY]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"scenarios": {}}
    started, host = time.monotonic(), machine()
    failed = []
    for name in names:
        tee = Tee(sys.stdout)
        t0 = time.monotonic()
        figures, error = None, None
        with contextlib.redirect_stdout(tee):
            try:
                figures = BENCHMARKS[name]()
            except Exception as exc:  # noqa: BLE001 - the other benchmarks still run; the failure is reported
                import traceback

                traceback.print_exc(file=sys.stdout)
                error = f"{type(exc).__name__}: {exc}"
                failed.append(name)
        seconds = time.monotonic() - t0
        print(f"  [{name}: {seconds:.0f} s]\n", flush=True)
        results["scenarios"][name] = {"seconds": seconds, "output": tee.kept.getvalue(), "figures": figures,
                                      "error": error, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    total = time.monotonic() - started
    if not sys.argv[1:]:
        results["run"] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "seconds": total, "machine": host,
                          "settings": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}}
    RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.render(results)
    print(f"bench: {len(names)} benchmarks in {total:.0f} s; {RESULTS.name}, RESULTS.md and results.png written"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
