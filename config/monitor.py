"""`python -m config.monitor`: a Prometheus beside `make run` (`make monitor`), scraping
the stack's /metrics with METRICS_TOKEN every few seconds and evaluating
deploy/prometheus/alerts.yml; its UI shows the alerts (http://127.0.0.1:9091/classic/alerts:
Debian's build serves Prometheus' classic UI, upstream's own is at /alerts).

The same configuration is what tests/test_alerts_live.py runs against a live stack, and
deploy/prometheus/prometheus.yml is its form for a deployment. Its data lives in
.run/prometheus-<stack port>/ (two days of it).
"""

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "aistatus"  # the alerts name it (AistatusDown)


def prometheus_config(
    *, target: str, token_file: Path, rule_files: list[Path], scrape_seconds: float, evaluation_seconds: float
) -> dict[str, Any]:
    """Prometheus' configuration: one job scraping `target`'s /metrics with the token
    in `token_file` as a bearer token, evaluating `rule_files`."""
    return {
        "global": {
            "scrape_interval": f"{scrape_seconds:g}s",
            # A scrape reads the dependencies with 2 s timeouts (core.metrics_sources).
            "scrape_timeout": f"{min(scrape_seconds, 10):g}s",
            "evaluation_interval": f"{evaluation_seconds:g}s",
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
            "static_configs": [{"targets": [target]}],
        }],
    }


def prepare(directory: Path, *, token: str, **config: Any) -> Path:
    """Write the token (readable by its owner only) and the configuration into
    `directory`; the configuration file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "metrics-token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prometheus_config(token_file=token_file, **config), sort_keys=False))
    return config_file


def prometheus_command(*, config_file: Path, data_dir: Path, listen: str, retention: str = "2d") -> list[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit(
            "Prometheus is not installed: `sudo apt-get install --no-install-recommends prometheus` (Debian's package)."
        )
    return [
        binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={retention}", f"--web.listen-address={listen}",
    ]


def main() -> None:
    token = os.environ.get("METRICS_TOKEN", "")
    if not token:
        raise SystemExit(
            "METRICS_TOKEN is not set: start the stack with it (METRICS_TOKEN=<some secret> make run; without it "
            "/metrics does not exist) and give make monitor the same one."
        )
    stack = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
    listen = f"127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9091')}"
    directory = ROOT / ".run" / f"prometheus-{os.environ.get('PORT', '8000')}"
    config_file = prepare(
        directory, token=token, target=stack, rule_files=[RULES], scrape_seconds=5, evaluation_seconds=5,
    )
    command = prometheus_command(config_file=config_file, data_dir=directory / "data", listen=listen)
    sys.stdout.write(f"\n  Prometheus on http://{listen}/  (alerts: http://{listen}/classic/alerts), scraping http://{stack}/metrics\n\n")
    sys.stdout.flush()
    os.execv(command[0], command)  # noqa: S606 - Prometheus itself, with a fixed argument list


if __name__ == "__main__":
    main()
