"""`make bench`: every benchmark, each printing its figures and their ratio to a
baseline measured in the same run."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from bench import counters, realtime_latency, reconnect_storm, servers, soak  # noqa: E402

BENCHMARKS = {
    "counters": counters.main,
    "realtime_latency": realtime_latency.main,
    "reconnect_storm": reconnect_storm.main,
    "servers": servers.main,
    "soak": soak.main,
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        BENCHMARKS[name]()
