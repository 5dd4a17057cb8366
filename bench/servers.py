"""Which ASGI server serves `config.asgi:application` best: daphne (what `make run`
used to start, and RUN_MODE=dev still does) against uvicorn and granian with one
worker per core, each started here on its own port against the bench's own database.

Per server, with wrk (loopback, WRK_SECONDS each, WRK_CONNECTIONS connections):
  - `GET /v1/auth/me`: the cheapest authenticated call (bearer token, cached; throttled
    as every API call is), i.e. the framework's own cost per request;
  - `GET /api/contents/{channel}/status` with the ETag it answered: a 304 poll;
  - `GET /api/contents/channel/{channel}`: a list of 20 contents;
and the streams: STREAMS SSE and STREAMS WebSocket clients open (time to `: connected`
/ `subscribed`), then one committed event must reach every one of them (spread over
the workers, so this also checks that each worker's hub is in the channel layer).

Ratios are against daphne as RUN_MODE=dev runs it (DEBUG on), measured in the same run
on the same machine; absolute figures are for reference only (a shared 2-core machine
running wrk itself). `python -m bench servers`."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.reconnect_storm import Committer, bench_database, bench_setup, free_port, quiet_http_logs
from config.web_server import granian_command

ROOT = Path(__file__).resolve().parent.parent
WORKERS = os.cpu_count() or 2
WRK_SECONDS = int(os.environ.get("BENCH_SERVERS_SECONDS", "6"))
WRK_CONNECTIONS = int(os.environ.get("BENCH_SERVERS_CONNECTIONS", "32"))
STREAMS = int(os.environ.get("BENCH_SERVERS_STREAMS", "4"))
BIN = Path(sys.executable).parent


def server_commands(port: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (command, extra environment). The first is the baseline."""
    app = "config.asgi:application"
    prod = {"DEBUG": "0"}
    return {
        "daphne (dev: DEBUG on)": (
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app], {"DEBUG": "1"}),
        "daphne (DEBUG off)": (
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app], prod),
        f"uvicorn x{WORKERS}": (
            [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
             "--loop", "uvloop", "--http", "httptools", "--no-access-log", app], prod),
        f"granian x{WORKERS}": (
            granian_command(host="127.0.0.1", port=port, workers=WORKERS, extra=["--no-access-log"]), prod),
    }


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, database_url: str, log: Path) -> None:
        self.name, self.port, self.log_path = name, port, log
        full_env = {**os.environ, "DATABASE_URL": database_url, "THROTTLE_USER": "100000000/min", **env}
        full_env.pop("REALTIME_HEARTBEAT_SECONDS", None)
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=out, stderr=out, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url("/healthz"), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} did not start; see {log}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the server's process group: the
    server's own cost, whatever else the (shared) machine is running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wrk(url: str, headers: dict[str, str], pgid: int) -> dict[str, Any]:
    command = ["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "--latency", "--timeout", "10s"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    cpu_before = group_cpu_seconds(pgid)
    out = subprocess.run([*command, url], check=False, capture_output=True, text=True, timeout=WRK_SECONDS + 60).stdout
    cpu = group_cpu_seconds(pgid) - cpu_before
    rps = float(_found(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests = int(_found(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "cpu_ms": cpu * 1000 / max(requests, 1), "p50": _ms(p50), "p99": _ms(p99), "bad": int(bad.group(1)) if bad else 0,
            "errors": errors.group(1) if errors else ""}


def _found(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"wrk's output has no {pattern!r}:\n{output}")
    return match


def _ms(match: Any) -> float:
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def streams(server: Server, *, channel_id: str, token: str, committer: Committer) -> dict[str, Any]:
    """Open STREAMS SSE and STREAMS WebSocket clients, commit one event, check every one gets it."""
    import httpx

    from tests.stream_clients import SSECollector, WSCollector, wait_for

    auth = {"Authorization": f"Bearer {token}"}
    opened: list[tuple[str, float, Any]] = []
    try:
        for _ in range(STREAMS):
            started = time.monotonic()
            sse = SSECollector(server.url(f"/api/contents/{channel_id}/events"), headers={**auth, "Last-Event-ID": str(committer.last)})
            opened.append(("sse", time.monotonic() - started, sse))
        for _ in range(STREAMS):
            started = time.monotonic()
            ticket = httpx.post(server.url("/v1/realtime/tickets"), headers=auth, timeout=10).json()["ticket"]
            ws = WSCollector(
                server.url(f"/api/contents/{channel_id}/ws?ticket={ticket}").replace("http://", "ws://"),
                origin=server.url(""), subscribe={"type": "subscribe", "channel_id": channel_id, "since": committer.last},
            )
            opened.append(("ws", time.monotonic() - started, ws))
        committed_at = time.monotonic()
        seq = committer.commit()
        everyone = wait_for(lambda: all(seq in client.ids for _, _, client in opened), timeout=10, interval=0.002)
        delivered = time.monotonic() - committed_at
        return {
            "sse_open": max(t for kind, t, _ in opened if kind == "sse") * 1000,
            "ws_open": max(t for kind, t, _ in opened if kind == "ws") * 1000,
            "received": sum(seq in client.ids for _, _, client in opened),
            "clients": len(opened),
            "delivery": delivered * 1000 if everyone else float("nan"),
        }
    except Exception as error:  # noqa: BLE001 - reported in the table
        return {"error": f"{type(error).__name__}: {error}"[:120], "received": 0, "clients": 2 * STREAMS}
    finally:
        for _, _, client in opened:
            client.close()


def make_contents(channel: Any, user: Any, count: int) -> None:
    from django.utils import timezone

    from contents.models import Content
    from contents.totals import totals_recount

    now = timezone.now()
    Content.objects.bulk_create([
        Content(channel=channel, provider=user, url=f"https://example.com/bench/{i}", title=f"Bench {i}",
                status="complete", processing_status="completed", progress=100, created_at=now, updated_at=now)
        for i in range(count)
    ])
    totals_recount(channel.id)  # inserted behind the services, which keep the totals


def main() -> None:
    import httpx

    quiet_http_logs()
    if shutil.which("wrk") is None:
        print("servers: wrk is not installed (apt-get install -y wrk); skipped")
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    results: dict[str, dict[str, Any]] = {}
    with bench_database("aistatus_bench_servers") as database_url:
        user, token, channel = bench_setup("servers")
        make_contents(channel, user, 20)
        committer = Committer(channel, user)
        channel_id = str(channel.id)
        auth = {"Authorization": f"Bearer {token}"}
        for name in server_commands(0):
            port = free_port()
            command, env = server_commands(port)[name]
            server = Server(name, command, env, port, database_url, workdir / f"{name.split()[0]}-{port}.log")
            try:
                status = httpx.get(server.url(f"/api/contents/{channel_id}/status"), headers=auth, timeout=10)
                etag = status.headers["ETag"]
                assert httpx.get(server.url(f"/api/contents/{channel_id}/status"), headers={**auth, "If-None-Match": etag},
                                 timeout=10).status_code == 304
                assert httpx.get(server.url("/v1/auth/me"), headers=auth, timeout=10).status_code == 200
                row = {
                    "noop": wrk(server.url("/v1/auth/me"), auth, server.process.pid),
                    "poll304": wrk(server.url(f"/api/contents/{channel_id}/status"), {**auth, "If-None-Match": etag}, server.process.pid),
                    "list": wrk(server.url(f"/api/contents/channel/{channel_id}?page_size=20"), auth, server.process.pid),
                }
                row["streams"] = streams(server, channel_id=channel_id, token=token, committer=committer)
                results[name] = row
            finally:
                server.stop()
        committer.verify()
        committer.cleanup()
    print_table(results)
    print(f"  logs: {workdir}")


def print_table(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    base = results[names[0]]
    print(f"servers: config.asgi:application on each server, {WORKERS} cores, wrk -c{WRK_CONNECTIONS} {WRK_SECONDS} s per row; "
          f"ratios against {names[0]} in this run")
    print("  req/s: what wrk got on this machine (shared: compare within a run); server CPU ms/req: the server's"
          " processes' CPU time per request, so 1000 / it is what one free core serves")
    header = f"  {'server':<24}" + "".join(f"{label:>40}" for label in ("no-op GET /v1/auth/me", "304 status poll", "list of 20"))
    print(header)
    print(f"  {'':<24}" + "".join(f"{'req/s (x base) CPU ms/req  p50/p99 ms':>40}" for _ in range(3)))
    for name in names:
        cells = []
        for key in ("noop", "poll304", "list"):
            r = results[name][key]
            ratio = r["rps"] / base[key]["rps"] if base[key]["rps"] else float("nan")
            bad = f" !{r['bad']} bad" if r["bad"] else ""
            cells.append(f"{r['rps']:>6.0f} (x{ratio:4.1f}) {r['cpu_ms']:>6.2f}  {r['p50']:>5.0f}/{r['p99']:<5.0f}{bad}")
        print(f"  {name:<24}" + "".join(f"{c:>40}" for c in cells))
    print(f"  streams: {STREAMS} SSE + {STREAMS} WebSocket clients open, then one committed event must reach all")
    for name in names:
        s = results[name]["streams"]
        if "error" in s:
            print(f"  {name:<24} FAILED: {s['error']}")
            continue
        print(f"  {name:<24} SSE open {s['sse_open']:6.0f} ms  WS open {s['ws_open']:6.0f} ms  "
              f"event reached {s['received']}/{s['clients']} in {s['delivery']:6.0f} ms")
