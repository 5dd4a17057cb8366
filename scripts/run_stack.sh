#!/usr/bin/env bash
# Starts the whole stack in the foreground: the RQ worker, the RQ cron scheduler
# (the stalled-content sweep) and the web server (HTTP, SSE and WebSocket on one port).
#
# RUN_MODE=production (the default): granian, one worker process per core (WEB_WORKERS,
# default `nproc`), DEBUG off, granian's access log off (the application writes one: core/request_log.py). `python -m bench servers` measured it
# against daphne and uvicorn (docs/operations.md, "Production server mode"). RUN_MODE=dev: daphne,
# one process, DEBUG on, its access log, as before.
# Each is supervised: one that exits (the RQ worker quits when Redis goes away) is
# started again, with a growing delay while it keeps failing, and the others go on.
# Ctrl-C or SIGTERM stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
RUN_MODE="${RUN_MODE:-production}"
WEB_WORKERS="${WEB_WORKERS:-$(nproc)}"
# Every held stream is a descriptor: take the hard limit (often 1,024 soft).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Told to stop (SIGTERM: a deploy, an orchestrator, a load balancer's drain), the stack
# first drains: the drain file makes /readyz answer 503 (core/health.py), so that a load
# balancer polling it sends new requests elsewhere, while everything here still answers
# what it has; WEB_DRAIN_SECONDS later the processes are stopped. Ctrl-C (SIGINT) stops
# at once: a person at a terminal has no load balancer to wait for.
# RUN_DIR holds this stack's drain file and metrics files: .run/ by default, named by
# port; a host of scripts/cluster.py gets one of its own, as its hosts share the tree
# and their port.
RUN_DIR="${RUN_DIR:-$PWD/.run}"
export WEB_DRAIN_FILE="${WEB_DRAIN_FILE:-$RUN_DIR/draining-$PORT}"
WEB_DRAIN_SECONDS="${WEB_DRAIN_SECONDS:-5}"
mkdir -p "$(dirname "$WEB_DRAIN_FILE")"
rm -f "$WEB_DRAIN_FILE"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$WEB_DRAIN_FILE"
}
drain_then_stop() {
  trap - TERM
  touch "$WEB_DRAIN_FILE"
  echo "run_stack: draining (/readyz answers 503) for ${WEB_DRAIN_SECONDS} s, then stopping" >&2
  sleep "$WEB_DRAIN_SECONDS" & wait $! || true
  cleanup
  exit 0
}
trap cleanup INT EXIT
trap drain_then_stop TERM

# Link fetches never reach loopback here either: the stack listens on it, and so do
# PostgreSQL and Redis. FETCH_ALLOW_LOOPBACK=1 in the environment is the explicit,
# local-only way to fetch a page served on 127.0.0.1.

case "$RUN_MODE" in
  production)
    # DEBUG keeps every SQL query of a request and adds checks; off unless asked for.
    export DEBUG="${DEBUG:-0}"
    # Uploads are stored on the local disk here: the app serves them (with DEBUG on it did).
    export SERVE_MEDIA="${SERVE_MEDIA:-1}"
    # Each worker is a process with its own event loop, stream hub and pools. A stream
    # (SSE or WebSocket) is one in-flight request for its whole life, so the backpressure
    # bound is the number of sockets a worker may hold (WEB_MAX_STREAMS_PER_WORKER, its
    # descriptors permitting: ulimit -n), far above what a worker opens per second.
    # A worker that dies is started again by granian; SIGTERM ends streams within 10 s.
    # config/web_server.py adds what bounds one connection (HTTP/1.1 only, the size and
    # the deadline of a request's head).
    web=($PY -m config.web_server --host "$HOST" --port "$PORT" --workers "$WEB_WORKERS"
         --no-access-log --backlog 4096 --backpressure "${WEB_MAX_STREAMS_PER_WORKER:-20000}"
         --respawn-failed-workers --workers-kill-timeout 10)
    web_name=granian
    ;;
  dev)
    # daphne's command line, its access log without ticket values (config/daphne_server.py).
    web=($PY -m config.daphne_server -b "$HOST" -p "$PORT" --websocket_timeout 86400 config.asgi:application)
    web_name=daphne
    ;;
  *) echo "run_stack: RUN_MODE must be production or dev, not '$RUN_MODE'" >&2; exit 2 ;;
esac

# GET /metrics sums what every process of the stack counted (prometheus_client's
# multiprocess mode): each writes its own files in this directory. Emptied at start, as
# the counts of an earlier run are not this one's; one per port, so that two stacks in
# one tree (yours and a test's) never share it. A process restarted by `supervise`
# keeps adding to the same totals.
export PROMETHEUS_MULTIPROC_DIR="$RUN_DIR/metrics-$PORT"
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# Settings that cannot load (production without SECRET_KEY, say) stop the stack here,
# with their message, rather than in a restart loop of all three.
$PY manage.py check --fail-level ERROR >/dev/null

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

supervise rqworker $PY manage.py rqworker default --worker-class core.worker.DjangoWorker &
pids+=($!)
# A cron on every host is right: each periodic job still runs once per period across the
# hosts sharing the queue's Redis (core/periodic.py), and any one of them keeps them going.
supervise cron $PY manage.py run_cron &
pids+=($!)
supervise "$web_name" "${web[@]}" &
pids+=($!)
# WEB_WS_PORT (production mode, for a load balancer): the same application on a second
# server for WebSocket upgrades, which the load balancer sends there (scripts/cluster.py's
# does): ~45 KiB an idle socket where granian's own handling takes ~149 (config/web_server.py).
# Never published: the load balancer bounds what reaches it. Without a load balancer,
# leave it unset: every path, WebSocket included, is served on PORT.
ws_line=""
if [ -n "${WEB_WS_PORT:-}" ] && [ "$RUN_MODE" = production ]; then
  supervise uvicorn $PY -m config.web_server --websockets --host "$HOST" --port "$WEB_WS_PORT" --workers "$WEB_WORKERS" &
  pids+=($!)
  ws_line="  WebSocket:  ws://$HOST:$WEB_WS_PORT/ (uvicorn, for the load balancer's WebSocket upgrades)"
fi

if [ "${DJANGO_ENV:-production}" = development ]; then
  settings_line="development (DJANGO_ENV=development: a fixed SECRET_KEY, plain-http cookies, CORS for http://localhost:3000; never deploy this)"
else
  settings_line="production (${DJANGO_SETTINGS_MODULE:-config.settings})"
fi
cat <<MSG

  Serving on http://$HOST:$PORT/  ($RUN_MODE mode: $web_name$( [ "$RUN_MODE" = production ] && echo ", $WEB_WORKERS workers"))
  Settings:   $settings_line
${ws_line:+$ws_line
}  API docs:   http://$HOST:$PORT/api/docs/
  Pages:      http://$HOST:$PORT/app/  (log in as demo, password demo-password)
  Token:      curl -X POST -H 'Content-Type: application/json' \\
                -d '{"username":"demo","password":"demo-password"}' http://$HOST:$PORT/v1/auth/token

MSG
wait "${pids[@]}"
