"""A cluster on one machine: a load balancer, two app hosts and a data host, each a
network namespace of its own, joined by a bridge.

    .venv/bin/python scripts/cluster.py up      [--name aistatus] [--port 8088] [--web-workers 1] [--pgbouncer]
    .venv/bin/python scripts/cluster.py status  [--name aistatus]
    .venv/bin/python scripts/cluster.py restart app1 | kill app1 | start app1 | stop app1
    .venv/bin/python scripts/cluster.py down    [--name aistatus] [--purge]

(`make cluster`, `make cluster-down`.) `up` starts everything in the background and
returns once the load balancer sends requests to both app hosts; `down` stops it all
and removes the namespaces. Root only (network namespaces), Debian's haproxy (installed
with apt-get when missing), postgresql and redis-server.

The hosts, in NAME-lb, NAME-app1, NAME-app2 and NAME-data, on 10.19.19.0/24 (the
addresses exist inside the namespaces only; the bridge is in NAME-net):

- lb (.2): HAProxy on :80. Health checks GET /readyz every second; a host whose
  readiness fails (503 while it drains, issue 18) gets no new request. API requests are
  balanced round robin and retried on another host when the connection to one fails;
  streams (SSE, WebSocket) go to the host holding fewest, pass through unbuffered with
  long timeouts, and are ended when their host is marked down, so that their clients
  reconnect (Last-Event-ID, since) to the other one.
- app1 (.11), app2 (.12): scripts/run_stack.sh in its production mode on :8000 (granian
  with WEB_WORKERS workers, the RQ worker, the RQ cron), everything pointing at data.
- data (.20): PostgreSQL on :5432 (Debian's binaries, run as the postgres user), the
  queue and cache Redis on :6379, and the channel layer's two Redis on :6380 and :6381,
  over which channels-redis shards the groups (CHANNEL_LAYER_REDIS_URLS). With
  --pgbouncer (CLUSTER_PGBOUNCER=1), Debian's PgBouncer in transaction mode on :6432,
  which the app hosts then connect to instead.

From the machine (the root namespace), a forwarder (a second HAProxy, in TCP mode,
whose outgoing connections open inside the namespaces) listens on 127.0.0.1: PORT is
the load balancer, and the ports after it are the LB's stats page, each app host
directly, PostgreSQL and the three Redis (`status` lists them). The files (logs,
PostgreSQL's and Redis' data, the LB's stats socket) are under .run/cluster/NAME/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from private_services import PrivatePostgres, Refused, install  # noqa: E402 - found through the line above

SUBNET = "10.19.19"
HOSTS = {"lb": 2, "app1": 11, "app2": 12, "data": 20}
APPS = ("app1", "app2")
APP_PORT = 8000
# Each app host's WebSocket server (run_stack.sh's WEB_WS_PORT): the load balancer sends
# WebSocket upgrades there, everything else (REST, SSE) to granian on APP_PORT.
APP_WS_PORT = 8001
LB_PORT = 80
LB_STATS_PORT = 8404
PG_PORT = 5432
PGBOUNCER_PORT = 6432
# The data host's Redis: the queue and cache's, then the channel layer's shards.
REDIS_PORTS = {"redis": 6379, "channels-a": 6380, "channels-b": 6381}
DATABASE = "aistatus"
# What the forwarder exposes on the machine's loopback, in order from PORT on:
# (name, host, port inside that host's namespace).
FORWARDS: tuple[tuple[str, str, int], ...] = (
    ("lb", "lb", LB_PORT),
    ("lb-stats", "lb", LB_STATS_PORT),
    ("app1", "app1", APP_PORT),
    ("app2", "app2", APP_PORT),
    ("postgres", "data", PG_PORT),
    *((name, "data", port) for name, port in REDIS_PORTS.items()),
    ("pgbouncer", "data", PGBOUNCER_PORT),  # with --pgbouncer
)
READY_WITHIN = 120.0
# Connections each HAProxy holds at most: two descriptors each, within the hard limit of
# open files (often 20,000 in a container; HAProxy refuses to start above it).
MAXCONN = 9000


def say(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def address(host: str) -> str:
    return f"{SUBNET}.{HOSTS[host]}"


def run(*command: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise Refused(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    if not quiet and done.returncode != 0:
        say(f"{' '.join(command)}: {done.stderr.strip()}")
    return done


def port_free(port: int) -> bool:
    """Whether HAProxy may listen on 127.0.0.1:port (it binds with SO_REUSEADDR, which a
    connection that merely uses the port, or its TIME_WAIT, does not prevent)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(port: int, path: str, *, timeout: float = 2.0) -> int | None:
    """The status of GET `path` on 127.0.0.1:port, or None when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64).decode("latin-1")
        return int(head.split()[1]) if head.startswith("HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Cluster:
    """One cluster: its namespaces are NAME-<host>, its files in .run/cluster/NAME/, its
    forwarded ports PORT, PORT+1, ... on 127.0.0.1."""

    name: str = "aistatus"
    port: int = 8088
    web_workers: int = 1
    # Settings for the app hosts' processes beyond the cluster's own (a test's timings).
    env: dict[str, str] | None = None
    # `make cluster` fills the database with the demo data as `make run` does.
    seed: bool = False
    # The app hosts reach PostgreSQL through Debian's PgBouncer in transaction mode on
    # the data host (:6432) instead of directly.
    pgbouncer: bool = False

    def __post_init__(self) -> None:
        self.dir = ROOT / ".run" / "cluster" / self.name
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # --- names and addresses ------------------------------------------------------

    def ns(self, host: str) -> str:
        return f"{self.name}-{host}"

    @property
    def namespaces(self) -> list[str]:
        return [self.ns("net"), *(self.ns(host) for host in HOSTS)]

    def forwarded(self, name: str) -> int:
        """The machine's loopback port that reaches `name` (lb, app1, postgres, ...)."""
        return self.port + [forward[0] for forward in FORWARDS].index(name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def database_url(self, *, from_root: bool = False) -> str:
        """PostgreSQL itself from the machine; from the app hosts, through PgBouncer when
        the cluster has one."""
        if from_root:
            return f"postgres://postgres@127.0.0.1:{self.forwarded('postgres')}/{DATABASE}"
        return f"postgres://postgres@{address('data')}:{PGBOUNCER_PORT if self.pgbouncer else PG_PORT}/{DATABASE}"

    def redis_url(self, name: str = "redis", *, from_root: bool = False) -> str:
        if from_root:
            return f"redis://127.0.0.1:{self.forwarded(name)}/0"
        return f"redis://{address('data')}:{REDIS_PORTS[name]}/0"

    def inside(self, host: str, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *command]

    # --- the whole -------------------------------------------------------------------

    def up(self) -> None:
        """Everything, in order; on any failure what was started is stopped again."""
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise Refused("the cluster needs root and iproute2's ip (network namespaces).")
        existing = set(run("ip", "netns", "list").stdout.split())
        if existing & set(self.namespaces):
            raise Refused(f"namespaces of a cluster named {self.name!r} exist already: "
                          f"run `scripts/cluster.py down --name {self.name}` first.")
        busy = [self.port + i for i in range(len(FORWARDS)) if not port_free(self.port + i)]
        if busy:
            raise Refused(f"ports {busy} of 127.0.0.1 are taken: choose another --port (CLUSTER_PORT).")
        if shutil.which("haproxy") is None:
            install("haproxy", "HAProxy", "install it yourself")
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.network()
            self.forwarder()
            self.start_data()
            self.prepare_database()
            for host in APPS:
                self.start_app(host)
            self.start_lb()
            for host in APPS:
                self.wait_for_app(host)
            self.wait_for_lb()
        except BaseException:
            self.down()
            raise
        self.save()
        say(f"up in {time.monotonic() - started:.0f} s")

    def down(self) -> None:
        """Stop every process of the cluster and remove its namespaces (the data stays)."""
        state = self.load()
        for host in APPS:
            pid = self.processes[host].pid if host in self.processes else state.get("pids", {}).get(host)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)  # run_stack.sh stops at once on SIGINT
        self.stop_postgres()
        listed = set(run("ip", "netns", "list", quiet=True).stdout.split())
        deadline = time.monotonic() + 15
        for ns in self.namespaces:
            while ns in listed and self.pids_in(ns) and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in self.pids_in(ns) if ns in listed else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        forwarder = self.processes.get("forwarder")
        forwarder_pid = forwarder.pid if forwarder else state.get("pids", {}).get("forwarder")
        if forwarder_pid and b"haproxy" in _cmdline(forwarder_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(forwarder_pid, signal.SIGKILL)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        for ns in self.namespaces:
            if ns in listed:
                run("ip", "netns", "del", ns, check=False)
        (self.dir / "state.json").unlink(missing_ok=True)

    def save(self) -> None:
        state = {"name": self.name, "port": self.port, "pgbouncer": self.pgbouncer,
                 "pids": {k: p.pid for k, p in self.processes.items()}}
        (self.dir / "state.json").write_text(json.dumps(state))

    def load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        self.port = state.get("port", self.port)
        self.pgbouncer = state.get("pgbouncer", self.pgbouncer)
        return state

    def pids_in(self, ns: str) -> list[int]:
        listing = run("ip", "netns", "pids", ns, check=False, quiet=True).stdout
        return [int(pid) for pid in listing.split()]

    # --- the network -----------------------------------------------------------------

    def network(self) -> None:
        """A bridge in NAME-net, and a veth pair from it to each host's eth0."""
        net = self.ns("net")
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", net, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", net, "link", "set", "br0", "up")
        for host in HOSTS:
            run("ip", "-n", net, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", self.ns(host))
            run("ip", "-n", net, "link", "set", host, "master", "br0", "up")
            run("ip", "-n", self.ns(host), "addr", "add", f"{address(host)}/24", "dev", "eth0")
            run("ip", "-n", self.ns(host), "link", "set", "eth0", "up")

    def link(self, host: str, up: bool) -> None:
        """The host's cable, at the bridge's end."""
        run("ip", "-n", self.ns("net"), "link", "set", host, "up" if up else "down")

    def forwarder(self) -> None:
        """127.0.0.1:PORT... on the machine to the hosts: a HAProxy in TCP mode here whose
        server sockets are opened in the hosts' namespaces (its `namespace` keyword)."""
        lines = [
            "global", f"    maxconn {MAXCONN}", "defaults", "    mode tcp", "    timeout connect 2s",
            # A stream through it may be quiet for long (a WebSocket without messages).
            "    timeout client 2h", "    timeout server 2h",
        ]
        for index, (name, host, port) in enumerate(FORWARDS):
            lines += [f"listen {name}", f"    bind 127.0.0.1:{self.port + index}",
                      f"    server {host} 127.0.0.1:{port} namespace {self.ns(host)}"]
        config = self.dir / "forwarder.cfg"
        config.write_text("\n".join(lines) + "\n")
        self.spawn("forwarder", ["haproxy", "-db", "-f", str(config)])

    def spawn(self, key: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A process of the cluster, in a session of its own (no terminal's Ctrl-C reaches
        it), its output appended to KEY.log."""
        with (self.dir / f"{key}.log").open("ab") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[key] = process
        return process

    # --- the data host ---------------------------------------------------------------

    def start_data(self) -> None:
        self.start_postgres()
        if self.pgbouncer:
            self.start_pgbouncer()
        for name in REDIS_PORTS:
            self.start_redis(name)

    def start_pgbouncer(self) -> None:
        """Debian's PgBouncer in transaction mode before PostgreSQL: a server connection
        is a client's for one transaction only. It refuses to run as root: as PostgreSQL,
        it runs as the postgres user, who owns its directory."""
        if shutil.which("pgbouncer") is None:
            install("pgbouncer", "PgBouncer", "run the cluster without --pgbouncer")
        _, as_owner = self.postgres_directory()
        directory = self.dir / "pgbouncer"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "userlist.txt").write_text('"postgres" ""\n')
        (directory / "pgbouncer.ini").write_text("\n".join([
            "[databases]",
            f"* = host=127.0.0.1 port={PG_PORT}",
            "[pgbouncer]",
            f"listen_addr = 127.0.0.1,{address('data')}",
            f"listen_port = {PGBOUNCER_PORT}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {directory / 'userlist.txt'}",
            "pool_mode = transaction",
            # Every process's pool of the two hosts (DB_POOL_MAX_SIZE each) as clients,
            # over fewer server connections.
            "max_client_conn = 2000",
            "default_pool_size = 40",
            f"pidfile = {directory / 'pgbouncer.pid'}",
            "",
        ]))
        as_user: list[str] = []
        if as_owner:
            for path in (directory, *directory.iterdir()):
                os.chown(path, as_owner["user"], as_owner["group"])
            as_user = ["setpriv", f"--reuid={as_owner['user']}", f"--regid={as_owner['group']}", "--clear-groups"]
        self.spawn("pgbouncer", self.inside("data", *as_user, "pgbouncer", str(directory / "pgbouncer.ini")))
        self.wait_until(lambda: self.postgres_answers(port=self.forwarded("pgbouncer")), "PgBouncer", "pgbouncer")

    def postgres_directory(self) -> tuple[Path, dict[str, Any]]:
        """Where the cluster's PostgreSQL keeps its data, and how to run as its owner:
        .run/cluster/NAME/postgres, or the postgres user's home when it cannot enter the
        checkout (as scripts/private_services.py decides for `make run`)."""
        owner = PrivatePostgres.owner()
        as_owner: dict[str, Any] = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
        directory = self.dir / "postgres"
        if owner is not None and not PrivatePostgres.reachable_by(directory, as_owner):  # type: ignore[arg-type]
            directory = PrivatePostgres.home_for(owner, directory)
        return directory, as_owner

    def start_postgres(self) -> None:
        bindir = PrivatePostgres.bindir()
        directory, as_owner = self.postgres_directory()
        directory.mkdir(parents=True, exist_ok=True)
        if as_owner:
            os.chown(directory, as_owner["user"], as_owner["group"])
        if not (directory / "PG_VERSION").exists():
            made = subprocess.run(
                [str(bindir / "initdb"), "-D", str(directory), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                 "--locale=C", "--no-sync", "--no-instructions"],
                check=False, cwd=directory, capture_output=True, text=True, **as_owner,
            )
            if made.returncode != 0:
                raise Refused(f"initdb failed in {directory}:\n{made.stderr or made.stdout}")
            # The app hosts connect over the bridge; trust, as make run's server does on 127.0.0.1.
            with (directory / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {SUBNET}.0/24 trust\n")
        as_user = ["setpriv", f"--reuid={as_owner['user']}", f"--regid={as_owner['group']}", "--clear-groups"] \
            if as_owner else []
        self.spawn("postgres", self.inside("data", *as_user, str(bindir / "postgres"), "-D", str(directory),
                                           "-p", str(PG_PORT), "-c", f"listen_addresses=127.0.0.1,{address('data')}",
                                           "-c", "unix_socket_directories=", "-c", "max_connections=300",
                                           "-c", "fsync=off", "-c", "synchronous_commit=off"))
        self.wait_until(self.postgres_answers, "PostgreSQL", "postgres")

    def postgres_answers(self, port: int | None = None) -> bool:
        import psycopg

        try:
            psycopg.connect(host="127.0.0.1", port=port or self.forwarded("postgres"), user="postgres",
                            dbname="postgres", connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop_postgres(self) -> None:
        """A fast shutdown (SIGINT), so that the next start needs no recovery."""
        directory, _ = self.postgres_directory()
        try:
            pid = int((directory / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if b"postgres" not in _cmdline(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 20
            while _cmdline(pid) and time.monotonic() < deadline:
                time.sleep(0.1)

    def start_redis(self, name: str) -> None:
        """One of the data host's Redis: noeviction (the queue and the channel layer must
        not lose keys), nothing on disk, as `make run`'s private Redis."""
        directory = self.dir / name
        directory.mkdir(parents=True, exist_ok=True)
        self.spawn(name, self.inside(
            "data", "redis-server", "--bind", f"127.0.0.1 {address('data')}", "--port", str(REDIS_PORTS[name]),
            "--protected-mode", "no", "--dir", str(directory), "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--maxclients", "10000",
        ))
        self.wait_until(lambda: self.redis_answers(name), f"Redis {name}", name)

    def redis_answers(self, name: str) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.forwarded(name)), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def restart_redis(self, name: str, *, down_for: float = 0.0) -> None:
        """Kill one of the data host's Redis (it keeps nothing) and start it again."""
        process = self.processes.get(name)
        if process is not None:
            process.kill()
            process.wait()
        time.sleep(down_for)
        self.start_redis(name)

    # --- the app hosts ---------------------------------------------------------------

    def app_env(self, host: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key not in {"DATABASE_URL", "REDIS_URL", "CACHE_REDIS_URL", "CHANNEL_LAYER_REDIS_URLS", "PORT",
                              "HOST", "PROMETHEUS_MULTIPROC_DIR", "WEB_DRAIN_FILE"}}
        env.update({
            "DATABASE_URL": self.database_url(),
            "REDIS_URL": self.redis_url(),
            "CHANNEL_LAYER_REDIS_URLS": f"{self.redis_url('channels-a')},{self.redis_url('channels-b')}",
            "HOST": "0.0.0.0",  # noqa: S104 - inside the host's namespace: its eth0 and its loopback
            "PORT": str(APP_PORT),
            "WEB_WS_PORT": str(APP_WS_PORT),
            "WEB_WORKERS": str(self.web_workers),
            "RUN_DIR": str(self.dir / host),
            # The names a request may carry: the forwarded ports' and the hosts' addresses.
            "ALLOWED_HOSTS": ",".join(["127.0.0.1", "localhost", *(address(h) for h in HOSTS)]),
            # The load balancer appends the client's address to X-Forwarded-For.
            "TRUSTED_PROXY_COUNT": "1",
            # The pool per process: two hosts of a few processes each stay far under max_connections.
            "DB_POOL_MAX_SIZE": env_default("DB_POOL_MAX_SIZE", "10"),
        })
        env.update(self.env or {})
        if "SECRET_KEY" not in env:
            # As `make run`: a local cluster is development's (a fixed SECRET_KEY, plain
            # http), unless the caller chose otherwise.
            env.setdefault("DJANGO_ENV", "development")
        return env

    def prepare_database(self) -> None:
        """The database and its migrations (and the demo data), once, from app1."""
        env = self.app_env("app1")
        steps = [["manage.py", "ensure_database"], ["manage.py", "migrate", "--noinput"]]
        if self.seed:
            steps.append(["manage.py", "seed_demo"])
        for step in steps:
            done = subprocess.run(self.inside("app1", str(ROOT / ".venv" / "bin" / "python"), *step), cwd=ROOT,
                                  env=env, capture_output=True, text=True, check=False, timeout=300)
            if done.returncode != 0:
                raise Refused(f"{' '.join(step)} failed on app1:\n{(done.stderr or done.stdout)[-3000:]}")

    def start_app(self, host: str) -> None:
        """run_stack.sh in its production mode on the host (returns at once)."""
        (self.dir / host).mkdir(parents=True, exist_ok=True)
        self.spawn(host, self.inside(host, "bash", "scripts/run_stack.sh"), env=self.app_env(host))

    def wait_for_app(self, host: str) -> None:
        self.wait_until(lambda: answers(self.forwarded(host), "/readyz") == 200, f"{host}'s stack", host)

    def stop_app(self, host: str, *, within: float = 60) -> float:
        """SIGTERM to the host's run_stack.sh, which drains (/readyz 503 for
        WEB_DRAIN_SECONDS) and stops; the seconds until it had."""
        process = self.processes[host]
        started = time.monotonic()
        process.terminate()
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill_app(host, link_down=False)
        return time.monotonic() - started

    def kill_app(self, host: str, *, link_down: bool = True) -> None:
        """The host lost: its cable pulled and every process in it SIGKILLed at once."""
        if link_down:
            self.link(host, up=False)
        for pid in self.pids_in(self.ns(host)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process = self.processes.get(host)
        if process is not None:
            process.wait()
        # Its drain file, had it been draining, is not the next start's.
        (self.dir / host / f"draining-{APP_PORT}").unlink(missing_ok=True)

    def revive_app(self, host: str) -> None:
        """The host back: its cable in, its stack started, until the LB sends it requests."""
        self.link(host, up=True)
        self.start_app(host)
        self.wait_for_app(host)
        self.wait_until(lambda: self.lb_up(host), f"{host} up at the load balancer", "lb")

    # --- the load balancer -----------------------------------------------------------

    def lb_config(self) -> str:
        servers = [(host, address(host)) for host in APPS]
        return "\n".join([
            "global",
            f"    maxconn {MAXCONN}",
            f"    stats socket {self.dir / 'lb.sock'} mode 600 level admin",
            "    log stdout format raw local0 notice",
            "",
            "defaults",
            "    mode http",
            "    log global",
            "    option httplog",
            "    option dontlognull",
            # The client's address for the app (TRUSTED_PROXY_COUNT=1 there).
            "    option forwardfor",
            # A host that does not accept within a second is taken as gone: the request
            # is retried (retries) on the other host (redispatch), which a dead host's
            # (link down, no RST) connection attempts need.
            "    timeout connect 1s",
            "    timeout client 65s",
            "    timeout server 65s",
            "    timeout http-request 10s",
            "    timeout http-keep-alive 10s",
            "    timeout queue 10s",
            # An upgraded connection (WebSocket) may be quiet for as long as it lives: the
            # app ends it after REALTIME_MAX_CONNECTION_SECONDS (1 h).
            "    timeout tunnel 2h",
            "    timeout client-fin 5s",
            "    retries 3",
            "    option redispatch 1",
            # Retried elsewhere: a connection that failed, and an answer that never came
            # on a kept-alive connection the host closed meanwhile (it was restarting).
            "    retry-on conn-failure empty-response",
            # Readiness every second (every half second once a check failed): a host is
            # out after two failures in a row and back after two successes. A draining
            # host (503) is out within ~1.5 s of its SIGTERM, well inside
            # WEB_DRAIN_SECONDS (5); a dead one (no connection within a second) within
            # ~3 s. A check may take 3 s: a host busy accepting a reconnect storm answers
            # /readyz late, and taking it out for that (ending its streams, below) would
            # move the storm to the other host and take that out too. (One failure and a
            # 1 s check timeout did exactly that under 400 connecting streams.)
            "    timeout check 3s",
            "    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2 check",
            "",
            "frontend web",
            f"    bind :{LB_PORT}",
            # Only a connection failure is retried for a write that a replay would repeat;
            # a create with an Idempotency-Key answers a replay with its first answer.
            "    http-request disable-l7-retry if !METH_GET !{ method HEAD OPTIONS } !{ req.hdr(idempotency-key) -m found }",
            "    acl websocket hdr(upgrade) -i websocket",
            "    acl sse path_end /events",
            "    use_backend websockets if websocket",
            "    use_backend streams if sse",
            "    default_backend api",
            "",
            "backend api",
            "    balance roundrobin",
            # A connection of its own to the host for each request, closed after its
            # answer (the client's own stays kept alive): a kept-alive one to a host that
            # has just died (cable pulled: no RST) would take the client's next request
            # for that host and hold it until `timeout server`, where a new one fails
            # within `timeout connect` (1 s) and the request is retried on the other
            # host. (Measured without: a GET right after the kill unanswered for 30 s.
            # A connection costs the hosts far less than a request's own work.) An SSE
            # response never ends, so this never closes a stream's connection.
            "    option http-server-close",
            "    option httpchk",
            "    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost",
            "    http-check expect status 200",
            *(f"    server {host} {ip}:{APP_PORT}" for host, ip in servers),
            "",
            # Streams: the host holding fewest gets the next one. Nothing buffered: an SSE
            # response is passed on as it is written (HAProxy never buffers a response,
            # and no http-buffer-request here). Quiet for long, but an SSE stream writes a
            # heartbeat every REALTIME_HEARTBEAT_SECONDS. A host marked down (readiness
            # failed: gone, or draining, when it would end its streams itself half way
            # through the drain) has its streams ended at once: their clients reconnect
            # to the other host from their last event id, where a dead host's would wait
            # for a timeout.
            "backend streams",
            "    balance leastconn",
            "    timeout server 2h",
            # The api backend's checks say whether a host is up (one check a second each).
            *(f"    server {host} {ip}:{APP_PORT} no-check track api/{host} on-marked-down shutdown-sessions"
              for host, ip in servers),
            "",
            # WebSockets the same way, on each host's WebSocket server (uvicorn: ~45 KiB an
            # idle socket where granian's own handling takes ~149; config/web_server.py). It
            # is up when its host's granian is: one process supervisor starts both.
            "backend websockets",
            "    balance leastconn",
            "    timeout server 2h",
            *(f"    server {host} {ip}:{APP_WS_PORT} no-check track api/{host} on-marked-down shutdown-sessions"
              for host, ip in servers),
            "",
            "listen stats",
            f"    bind :{LB_STATS_PORT}",
            "    no log",
            "    stats enable",
            "    stats uri /",
            "    stats refresh 2s",
            "",
        ])

    def start_lb(self) -> None:
        config = self.dir / "lb.cfg"
        config.write_text(self.lb_config())
        checked = run("haproxy", "-c", "-q", "-f", str(config), check=False)
        if checked.returncode != 0:
            raise Refused(f"the load balancer's configuration is refused: {checked.stderr or checked.stdout}")
        self.spawn("lb", self.inside("lb", "haproxy", "-db", "-f", str(config)))

    def lb_command(self, command: str) -> str:
        """A command on the load balancer's runtime API (its stats socket)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.dir / "lb.sock"))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def lb_stats(self) -> list[dict[str, str]]:
        """`show stat`: a row per frontend, server and backend (pxname, svname, status,
        scur: current sessions, stot: sessions in all, ...)."""
        lines = self.lb_command("show stat").strip().splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]

    def lb_up(self, host: str) -> bool:
        try:
            rows = self.lb_stats()
        except OSError:
            return False
        statuses = {row["pxname"]: row["status"] for row in rows if row["svname"] == host}
        return statuses.get("api") == "UP" and statuses.get("streams") == "UP"

    def wait_for_lb(self) -> None:
        self.wait_until(lambda: all(self.lb_up(host) for host in APPS) and answers(self.port, "/readyz") == 200,
                        "the load balancer with both app hosts up", "lb")

    def wait_until(self, ready: Any, what: str, key: str, within: float = READY_WITHIN) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for watched in (key, "forwarder"):
                process = self.processes.get(watched)
                if process is not None and process.poll() is not None:
                    raise Refused(f"{what}: {watched} exited ({process.returncode}); its log "
                                  f"({self.dir / watched}.log):\n{tail(self.dir / f'{watched}.log')}")
            if ready():
                return
            time.sleep(0.2)
        raise Refused(f"{what} not ready within {within:.0f} s; its log ({self.dir / key}.log):\n"
                      f"{tail(self.dir / f'{key}.log')}")

    def describe(self) -> str:
        rows = [f"  load balancer:   {self.url}/   (stats page: http://127.0.0.1:{self.forwarded('lb-stats')}/)"]
        rows.extend(f"  {host} directly:  http://127.0.0.1:{self.forwarded(host)}/   "
                    f"({address(host)}:{APP_PORT} in {self.ns(host)}; log {self.dir / host}.log)" for host in APPS)
        rows.append(f"  PostgreSQL:      {self.database_url(from_root=True)}")
        if self.pgbouncer:
            rows.append(f"  PgBouncer:       postgres://postgres@127.0.0.1:{self.forwarded('pgbouncer')}/{DATABASE}"
                        "   (transaction mode; the app hosts' DATABASE_URL)")
        rows.extend(f"  Redis {name}:{' ' * (10 - len(name))}{self.redis_url(name, from_root=True)}"
                    for name in REDIS_PORTS)
        rows.append(f"  stop it with:    make cluster-down{'' if self.name == 'aistatus' else f' CLUSTER_NAME={self.name}'}")
        return "\n".join(rows)


def env_default(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status", "stop", "start", "restart", "kill"])
    parser.add_argument("host", nargs="?", choices=APPS)
    parser.add_argument("--name", default=os.environ.get("CLUSTER_NAME", "aistatus"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CLUSTER_PORT", "8088")))
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "1")))
    parser.add_argument("--seed", action="store_true", help="the demo data, as make run has it")
    parser.add_argument("--pgbouncer", action="store_true", default=os.environ.get("CLUSTER_PGBOUNCER") == "1",
                        help="the app hosts reach PostgreSQL through PgBouncer in transaction mode")
    parser.add_argument("--purge", action="store_true", help="with down: remove the data too")
    args = parser.parse_args(argv)
    cluster = Cluster(name=args.name, port=args.port, web_workers=args.web_workers, seed=args.seed,
                      pgbouncer=args.pgbouncer)
    try:
        if args.action == "up":
            cluster.up()
            print(f"\nThe cluster {cluster.name!r} is up:\n{cluster.describe()}\n", flush=True)
        elif args.action == "down":
            cluster.down()
            if args.purge:
                shutil.rmtree(cluster.dir, ignore_errors=True)
                shutil.rmtree(cluster.postgres_directory()[0], ignore_errors=True)
            say(f"{cluster.name!r} is down: its namespaces are removed"
                + ("" if args.purge else f", its data kept in {cluster.dir}"))
        elif args.action == "status":
            if not cluster.load():
                say(f"no cluster named {cluster.name!r} is up")
                return 1
            print(cluster.describe())
            for row in cluster.lb_stats():
                if row["svname"] in APPS:
                    print(f"  {row['pxname']:8} {row['svname']:5} {row['status']:6} "
                          f"sessions now {row['scur']:>5}, in all {row['stot']:>7}")
        else:
            return host_action(cluster, args.action, args.host)
    except Refused as refusal:
        print(f"cluster: {refusal}", file=sys.stderr, flush=True)
        return 1
    return 0


def host_action(cluster: Cluster, action: str, host: str | None) -> int:
    """stop, start, restart or kill one app host of a cluster `up` started (another
    process: its stack's pid is read from the state file)."""
    if host is None:
        print(f"cluster: {action} needs a host: app1 or app2", file=sys.stderr)
        return 2
    state = cluster.load()
    if not state:
        raise Refused(f"no cluster named {cluster.name!r} is up")
    pid = state["pids"].get(host)
    if action in {"stop", "restart"} and pid and _cmdline(pid):
        os.kill(pid, signal.SIGTERM)
        while _cmdline(pid) and b"<defunct>" not in _cmdline(pid):
            time.sleep(0.2)
        say(f"{host} drained and stopped")
    if action == "kill":
        cluster.kill_app(host)
        say(f"{host} killed (every process SIGKILLed, link down)")
    if action in {"start", "restart"}:
        cluster.link(host, up=True)
        cluster.start_app(host)
        cluster.wait_for_app(host)
        cluster.wait_until(lambda: cluster.lb_up(host), f"{host} up at the load balancer", "lb")
        state["pids"][host] = cluster.processes[host].pid
        (cluster.dir / "state.json").write_text(json.dumps(state))
        say(f"{host} started")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
