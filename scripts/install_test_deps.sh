#!/usr/bin/env bash
# System packages the tests need beyond the virtualenv: Debian's chromium for the
# browser tests (Playwright drives it; a Playwright browser download is not used), and
# redis-server for the tests that restart a private Redis of their own, Debian's
# prometheus for the alert rules' tests, and a Korean font (fonts-nanum) for the pages'
# screenshots in Korean.
set -euo pipefail
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The fault tests need redis-server: run 'sudo apt-get install redis-server'." >&2
    exit 1
  fi
  echo "Installing Debian's redis-server for the fault tests (a private one per test, never the machine's)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium'." >&2
    exit 1
  fi
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# Debian's haproxy, the load balancer of the cluster test (tests/test_cluster.py), which
# needs root for its network namespaces anyway: skipped, not failed, without it.
if ! command -v haproxy >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The cluster test is skipped: it needs root (network namespaces) and Debian's haproxy." >&2
  else
    echo "Installing Debian's haproxy for the cluster test..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  fi
fi
# Debian's prometheus, for the alert rules' tests (promtool) and the live alert test.
bash "$(dirname "$0")/install_prometheus.sh"
# A Korean font, so that the pages' screenshots in Korean (docs/screenshots/) show text, not boxes.
if ! fc-list :lang=ko 2>/dev/null | grep -q .; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The Korean screenshots need a Korean font: run 'sudo apt-get install fonts-nanum'." >&2
    exit 1
  fi
  echo "Installing Debian's fonts-nanum for the Korean screenshots..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-nanum >/dev/null
fi
/usr/bin/chromium --version
