"""A real Prometheus (Debian's package) of the test's own, configured as `make monitor`
configures one (config.monitor), scraping a live stack and evaluating alert rules."""

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from config.monitor import RULES, prepare, prometheus_command
from tests.live import free_port

_DURATION = re.compile(r"^(\d+)([smh])$")
_RANGE = re.compile(r"\[(\d+)([smh])\]")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def seconds(duration: str) -> int:
    match = _DURATION.match(duration)
    assert match is not None, duration
    return int(match[1]) * _SECONDS[match[2]]


def shortened_rules(*, range_divisor: int = 30, for_divisor: int = 60) -> dict[str, Any]:
    """deploy/prometheus/alerts.yml with its durations shortened for a test: every range
    window divided by `range_divisor` (at least 8 s: several scrapes of 1 s), every
    `for:` by `for_divisor` (at least 2 s). The expressions, thresholds and labels are the
    shipped ones."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = f"{max(2, seconds(rule['for']) // for_divisor)}s"
            rule["expr"] = _RANGE.sub(
                lambda m: f"[{max(8, int(m[1]) * _SECONDS[m[2]] // range_divisor)}s]", rule["expr"]
            )
    return rules


class Prometheus:
    """prometheus on a free port of 127.0.0.1 scraping `target` every second with
    `token`, evaluating `rules` every second."""

    def __init__(self, *, target: str, token: str, rules: dict[str, Any]) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        rules_file = self.dir / "alerts.yml"
        rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
        config = prepare(
            self.dir, token=token, target=target, rule_files=[rules_file], scrape_seconds=1, evaluation_seconds=1
        )
        self.log_path = self.dir / "prometheus.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                prometheus_command(config_file=config, data_dir=self.dir / "data", listen=f"127.0.0.1:{self.port}"),
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.api.get("/-/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.close()
        raise RuntimeError("prometheus did not start: " + self.log_path.read_text()[-3000:])

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.api.get("/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Prometheus' own view: the alerts pending or firing now (a resolved one is gone)."""
        answer = self.api.get("/api/v1/alerts").json()
        assert answer["status"] == "success", answer
        return answer["data"]["alerts"]

    def state_of(self, alertname: str) -> str | None:
        """'firing' or 'pending' (firing if any of its series fires); None when inactive."""
        states = {alert["state"] for alert in self.alerts() if alert["labels"]["alertname"] == alertname}
        return "firing" if "firing" in states else "pending" if states else None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.api.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
