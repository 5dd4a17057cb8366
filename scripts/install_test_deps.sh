#!/usr/bin/env bash
# System packages the tests need beyond the virtualenv: Debian's chromium for the
# browser tests (Playwright drives it; a Playwright browser download is not used).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium'." >&2
    exit 1
  fi
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version
