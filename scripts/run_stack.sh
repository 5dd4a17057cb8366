#!/usr/bin/env bash
# Starts the whole stack in the foreground: the RQ worker, the RQ cron scheduler
# (the stalled-content sweep) and daphne (HTTP, SSE and WebSocket on one port).
# Each is supervised: one that exits (the RQ worker quits when Redis goes away) is
# started again, with a growing delay while it keeps failing, and the others go on.
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

# GET /metrics sums what every process of the stack counted (prometheus_client's
# multiprocess mode): each writes its own files in this directory. Emptied at start, as
# the counts of an earlier run are not this one's; one per port, so that two stacks in
# one tree (yours and a test's) never share it. A process restarted by `supervise`
# keeps adding to the same totals.
export PROMETHEUS_MULTIPROC_DIR="$PWD/.run/metrics-$PORT"
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# supervise NAME COMMAND...: run COMMAND, and again whenever it exits, until stopped.
supervise() {
  local name=$1; shift
  local delay=1 child=""
  trap 'test -n "$child" && kill "$child" 2>/dev/null; wait 2>/dev/null; exit 0' INT TERM
  while true; do
    local started=$SECONDS
    "$@" &
    child=$!
    local code=0
    wait "$child" || code=$?
    child=""
    # A run that lasted a while was healthy: start again at once-ish. One that died
    # quickly (its service still away) waits longer each time, up to 30 s.
    if (( SECONDS - started >= 30 )); then delay=1; fi
    echo "run_stack: $name exited with status $code; starting it again in ${delay} s" >&2
    sleep "$delay" & wait $! || true  # interruptible by the stop signal
    delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
  done
}

supervise rqworker $PY manage.py rqworker default --worker-class config.rq.DjangoWorker &
pids+=($!)
supervise cron $PY manage.py run_cron &
pids+=($!)
supervise daphne $PY -m daphne -b "$HOST" -p "$PORT" --websocket_timeout 86400 config.asgi:application &
pids+=($!)

cat <<MSG

  Serving on http://$HOST:$PORT/
  API docs:   http://$HOST:$PORT/api/docs/
  Log in:     http://$HOST:$PORT/accounts/login/  (user: demo, password: demo-password)
  Token:      curl -X POST -H 'Content-Type: application/json' \\
                -d '{"username":"demo","password":"demo-password"}' http://$HOST:$PORT/v1/auth/token

MSG
wait "${pids[@]}"
