#!/usr/bin/env bash
# Test-only system dependencies. Nothing here yet beyond the virtualenv; the
# browser tests of later issues install Debian's chromium from here.
set -euo pipefail
exit 0
