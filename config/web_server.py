"""`python -m config.web_server --host H --port P --workers N`: the production web server
(granian) with the bounds that hold per connection, started the one way `make run`
(scripts/run_stack.sh) and the tests start it.

What one connection may make the server hold, before the application sees a byte:

- HTTP/1.1 only (`--http 1`): granian otherwise also speaks cleartext HTTP/2 (h2c) to
  whoever opens with its preface, advertising header lists of 16 MiB and 200 streams a
  connection: one anonymous connection of 30 requests with 15 MB headers took 450 MB.
  Nothing needs h2c: browsers speak HTTP/2 only over TLS, which a deployment terminates
  at its proxy or load balancer (HTTP/2 to the browser there, HTTP/1.1 here), SSE and
  WebSocket are served over HTTP/1.1, and the API's clients are HTTP/1.1 clients.
- The request head (request line and headers) in hyper's read buffer of
  WEB_MAX_HEADER_BYTES (64 KiB), otherwise 408 KiB a connection: a head that does not fit
  is answered 431. The buffer grows in doublings past its bound once, so a head between
  64 and 128 KiB may still pass; beyond that, none does.
- The head within WEB_HEADER_TIMEOUT_SECONDS (10 s), on a new connection and between
  the requests of a kept-alive one: a connection that sends nothing is closed then.
- The body: in time and within its size (core.body_limit), by the application, as
  granian hands it over in chunks.
"""

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "")
    return int(value) if value.strip() else default


def granian_command(
    *, host: str, port: int, workers: int, extra: list[str] | None = None, environ: Mapping[str, str] = os.environ
) -> list[str]:
    """granian's command line for config.asgi:application with the bounds above, read
    from `environ` (the environment granian will run in)."""
    header_bytes = _env_int(environ, "WEB_MAX_HEADER_BYTES", 64 * 1024)
    header_ms = _env_int(environ, "WEB_HEADER_TIMEOUT_SECONDS", 10) * 1000
    return [
        # The granian installed beside this Python (the project's virtualenv).
        str(Path(sys.executable).parent / "granian"), "--interface", "asginl", "--host", host, "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop",
        "--http", "1",
        # hyper refuses a buffer under 8 KiB.
        "--http1-buffer-size", str(max(8192, header_bytes)),
        "--http1-header-read-timeout", str(max(1, min(60_000, header_ms))),
        *(extra or []),
        "config.asgi:application",
    ]


def websocket_server_command(
    *, host: str, port: int, workers: int, environ: Mapping[str, str] = os.environ
) -> list[str]:
    """The WebSocket server's command line: the same application on uvicorn (httptools,
    websockets' sans-I/O protocol), for a load balancer that sends WebSocket upgrades to
    WEB_WS_PORT and everything else to granian (scripts/cluster.py's does).

    Why a second server: granian's own WebSocket handling holds ~149 KiB a socket
    whatever its options (a bare ASGI app on it; bench/stream_memory.py), this one ~20,
    ~45 with the application, against a budget of 64 (issue 20). It is not the REST
    server: granian bounds a request's head in size and time before the application
    sees it (above), and serves REST and SSE within their budgets. Here the load balancer
    in front bounds the head (HAProxy's `timeout http-request`, its buffer), so this port
    is for it alone, never for the outside.

    - no Server header, no access log (the application writes one: core.request_log);
    - the client's address from the proxy's X-Forwarded-For by the application
      (TRUSTED_PROXY_COUNT, core.client), as on granian, not by uvicorn;
    - a message is refused past 4x REALTIME_WS_MAX_MESSAGE_BYTES by uvicorn itself (what it
      buffers a socket), and past 1x by the application (close 4009, realtime.inbound);
    - a worker holds at most WEB_MAX_STREAMS_PER_WORKER connections (granian's backpressure)."""
    message_bytes = _env_int(environ, "REALTIME_WS_MAX_MESSAGE_BYTES", 16 * 1024)
    return [
        sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
        "--lifespan", "off", "--no-access-log", "--no-server-header", "--no-proxy-headers", "--backlog", "4096",
        "--ws-max-size", str(4 * message_bytes),
        "--limit-concurrency", str(_env_int(environ, "WEB_MAX_STREAMS_PER_WORKER", 20000)),
        "--timeout-graceful-shutdown", "10",
        "config.asgi:application",
    ]


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--websockets", action="store_true", help="the WebSocket server (websocket_server_command)")
    args, extra = parser.parse_known_args(argv)
    if args.websockets:
        command = websocket_server_command(host=args.host, port=args.port, workers=args.workers)
    else:
        command = granian_command(host=args.host, port=args.port, workers=args.workers, extra=extra)
    os.execv(command[0], command)  # noqa: S606 - granian itself, with a fixed argument list


if __name__ == "__main__":
    main(sys.argv[1:])
