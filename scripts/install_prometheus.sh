#!/usr/bin/env bash
# Debian's prometheus (prometheus and promtool), for `make monitor` and the alert tests
# (promtool checks and unit-tests deploy/prometheus/alerts.yml; a real Prometheus scrapes
# a live stack in tests/test_alerts_live.py). Installed only when missing. The package's
# own service (port 9090, which Debian starts where systemd runs) is not used: ours run
# on their own ports; `systemctl disable --now prometheus` stops it.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Prometheus is needed (make monitor, the alert tests): run 'sudo apt-get install --no-install-recommends prometheus'." >&2
  exit 1
fi
echo "Installing Debian's prometheus..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
