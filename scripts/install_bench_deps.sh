#!/usr/bin/env bash
# System packages `make bench` needs beyond the virtualenv: wrk, the HTTP load
# generator of the server and poll benchmarks (Debian's package).
set -euo pipefail
if command -v wrk >/dev/null; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "make bench needs wrk: run 'sudo apt-get install wrk'." >&2
  exit 1
fi
echo "Installing Debian's wrk for the benchmarks..."
# Another apt run (a test's install) may hold the lock for a while: wait for it.
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk >/dev/null
