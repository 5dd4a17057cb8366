#!/usr/bin/env bash
# Starts the whole stack in the foreground: the RQ worker, the RQ cron scheduler
# (the stalled-content sweep) and daphne (HTTP, SSE and WebSocket on one port).
# Ctrl-C or SIGTERM stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# `make run` is a local development stack: its link fetches may reach pages served on
# loopback (a local test server). Production leaves FETCH_ALLOW_LOOPBACK unset.
export FETCH_ALLOW_LOOPBACK="${FETCH_ALLOW_LOOPBACK:-1}"

$PY manage.py rqworker default --worker-class config.rq.DjangoWorker &
pids+=($!)
$PY manage.py run_cron &
pids+=($!)
$PY -m daphne -b "$HOST" -p "$PORT" --websocket_timeout 86400 config.asgi:application &
pids+=($!)

cat <<MSG

  Serving on http://$HOST:$PORT/
  API docs:   http://$HOST:$PORT/api/docs/
  Log in:     http://$HOST:$PORT/accounts/login/  (user: demo, password: demo-password)
  Token:      curl -X POST -H 'Content-Type: application/json' \\
                -d '{"username":"demo","password":"demo-password"}' http://$HOST:$PORT/v1/auth/token

MSG
# Whichever process exits first takes the others down with it.
wait -n "${pids[@]}"
