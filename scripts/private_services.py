"""`make run`'s PostgreSQL and Redis: the ones the settings point at when they answer,
private ones of its own when they do not.

    .venv/bin/python scripts/private_services.py [--run-dir .run] [--name 8000] -- COMMAND...

For each of PostgreSQL (DATABASE_URL) and Redis (REDIS_URL):

- set in the environment: used as given. If nothing answers there, this stops with a
  message naming it, starting nothing: a server someone chose is not silently replaced.
- not set (the settings' default, 127.0.0.1:5432 / :6379) and something answers: used.
- not set and nothing answers: a private server from Debian's packages (installed with
  apt-get when missing and this runs as root) on a free port of 127.0.0.1, its files in
  RUN_DIR/postgres-NAME/ and RUN_DIR/redis-NAME/ (NAME is `make run`'s PORT, so the
  data of `make run` on one port is there again next time, and two stacks in one tree
  never share a server).

COMMAND then runs with DATABASE_URL / REDIS_URL pointing at what was chosen, in a
session of its own: SIGINT, SIGTERM and SIGHUP reach this process (Ctrl-C, `kill`,
make passing SIGTERM on) and are passed on to COMMAND's whole process group once, and
when COMMAND has ended the private servers are stopped. The exit status is COMMAND's.

Plain Python with no Django set-up, so that it reads the environment as the caller
gave it: the settings module is only imported for its defaults, afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
READY_WITHIN = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long COMMAND's processes may take to end after it did, before they are killed.
GROUP_GRACE = 60.0


class Refused(Exception):
    """A reason to stop before running COMMAND, said to the user as it is."""


def say(message: str) -> None:
    print(f"private_services: {message}", flush=True)


def reachable(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection there: 'not running' is what starts a
    private server; a server that answers but refuses us is the settings' problem, which
    `manage.py check_services` then reports."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_address(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced, user, path and query kept."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"))


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def relative(path: Path) -> str:
    try:
        return f"{path.relative_to(ROOT)}/"
    except ValueError:
        return f"{path}/"


def install(package: str, what: str, advice: str) -> None:
    """Debian's `package`, when this may install it (root, apt-get); otherwise a refusal
    that says how."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Refused(f"{what} is not installed and this user cannot install it: run "
                      f"'sudo apt-get install {package}', or {advice}.")
    say(f"{what} is not installed: installing Debian's {package} ...")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def leftover(pid_file: Path, program: str) -> int | None:
    """The pid in `pid_file` when that process is still a `program`: a server of this
    directory left running by a run that was killed before it could stop it."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if program.encode() in cmdline else None


def end(process: subprocess.Popen[bytes], sig: signal.Signals, within: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def end_pid(pid: int, sig: signal.Signals, within: float) -> None:
    """Stop a process that is not our child (a leftover): signal, then wait for it to go."""
    try:
        os.kill(pid, sig)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class PrivateServer:
    """A server process of ours on 127.0.0.1:port, its files in `directory`."""

    what = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The directory asked for, when the server's files had to live elsewhere.
        self.moved_from: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def wait_until_ready(self, ready: Callable[[], None], log: Path) -> None:
        """Until `ready` returns (it raises OSError while the server does not answer)."""
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise Refused(f"the private {self.what} exited at start ({self.process.returncode}); "
                              f"its log ({log}):\n{tail(log)}")
            try:
                ready()
                return
            except OSError:  # not answering yet
                time.sleep(0.1)
        raise Refused(f"the private {self.what} did not answer within {READY_WITHIN:.0f} s; "
                      f"its log ({log}):\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _AsUser(TypedDict, total=False):
    """subprocess's arguments that run a program as another user."""

    user: int
    group: int
    extra_groups: list[int]


class PrivatePostgres(PrivateServer):
    """Debian's PostgreSQL server binaries, a cluster of our own (trust on 127.0.0.1 only,
    no Unix socket), made once and used again by later runs with the same directory.
    PostgreSQL refuses to run as root: as root it runs as the `postgres` user that
    Debian's package creates, which then owns the directory."""

    what = "PostgreSQL"

    def __init__(self, directory: Path, superuser: str) -> None:
        super().__init__(directory)
        self.superuser = superuser

    def start(self) -> None:
        superuser = self.superuser
        bindir = self.bindir()
        owner = self.owner()
        as_owner: _AsUser = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
        if owner is not None and not self.reachable_by(self.directory, as_owner):
            # A checkout under /root or any `mktemp -d` (mode 700): the data goes to the
            # owner's home instead, under a name of this checkout, there again next time.
            closed = self.directory
            self.directory = self.home_for(owner, closed)
            self.moved_from = closed
            if not self.reachable_by(self.directory, as_owner):
                raise Refused(
                    f"PostgreSQL refuses to run as root, so it runs as the '{owner.pw_name}' user here, and that "
                    f"user can reach neither {closed} (a directory above it is closed to other users, as /root "
                    f"is) nor {self.directory}. Run `chmod o+x` on the directories above the project, or set "
                    f"DATABASE_URL to a running server."
                )
        made = [d for d in (self.directory, *self.directory.parents) if not d.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            # Every directory made here is the server's user's (root made them).
            for directory in {self.directory, *made}:
                os.chown(directory, owner.pw_uid, owner.pw_gid)
        if not (self.directory / "PG_VERSION").exists():
            # --no-sync: an empty development cluster, not worth seconds of fsync.
            initdb = subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.directory), "-U", superuser, "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                check=False, cwd=self.directory, capture_output=True, text=True, **as_owner,
            )
            if initdb.returncode != 0:
                raise Refused(f"initdb failed in {self.directory}:\n{initdb.stderr or initdb.stdout}")
        stale = leftover(self.directory / "postmaster.pid", "postgres")
        if stale is not None:
            say(f"stopping the PostgreSQL (pid {stale}) an earlier run left on {relative(self.directory)}")
            end_pid(stale, signal.SIGINT, 30)
        self.port = free_port()
        log = self.directory / "server.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(self.directory), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
                cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                # Its own session: a Ctrl-C at the terminal does not reach it; it is
                # stopped after the stack that uses it.
                start_new_session=True, **as_owner,
            )

        def ready() -> None:
            import psycopg

            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user=superuser, dbname="postgres",
                                connect_timeout=2).close()
            except psycopg.OperationalError as exc:  # starting up, or not listening yet
                raise ConnectionError(str(exc)) from exc

        self.wait_until_ready(ready, log)

    def stop(self) -> None:
        if self.process is not None:
            end(self.process, signal.SIGINT, 30)  # SIGINT: PostgreSQL's fast shutdown

    @staticmethod
    def reachable_by(directory: Path, as_owner: _AsUser) -> bool:
        """Whether the server's user may reach `directory`: enter every directory down to
        its nearest existing one (root makes the rest and gives them to that user), and
        write in `directory` itself if it exists already."""
        existing = directory
        while not existing.exists():
            existing = existing.parent
        check = ["test", "-x", str(existing)] if existing != directory else ["test", "-w", str(directory), "-a", "-x", str(directory)]
        return subprocess.run(check, check=False, **as_owner).returncode == 0

    @staticmethod
    def home_for(owner: pwd.struct_passwd, closed: Path) -> Path:
        """Where a checkout the owner cannot enter keeps its cluster: in the owner's home
        (Debian's /var/lib/postgresql), named after the checkout's path, so that two
        checkouts never share one and the same checkout finds its data again."""
        digest = hashlib.sha256(str(closed).encode()).hexdigest()[:12]
        return Path(owner.pw_dir) / "aistatus" / f"{closed.name}-{digest}"

    @staticmethod
    def bindir() -> Path:
        for attempt in range(2):
            versions = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
            if versions:
                return max(versions, key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
            found = shutil.which("postgres")
            if found:
                return Path(found).parent
            if attempt == 0:
                install("postgresql", "PostgreSQL's server", "set DATABASE_URL to a running server")
        raise Refused("PostgreSQL's server binaries are not in /usr/lib/postgresql/*/bin even after installing postgresql.")

    @staticmethod
    def owner() -> pwd.struct_passwd | None:
        """Who runs the server: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise Refused("PostgreSQL refuses to run as root, and there is no 'postgres' user to run it as "
                          "(Debian's postgresql package creates one).") from None


class PrivateRedis(PrivateServer):
    """Debian's redis-server with `make run`'s settings: noeviction (the queue and the
    channel layer must not lose keys; docs/operations.md, 'Redis roles') and nothing kept on disk
    (the sweep re-enqueues what a restart lost)."""

    what = "Redis"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            install("redis-server", "Redis", "set REDIS_URL to a running server")
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.directory.mkdir(parents=True, exist_ok=True)
        stale = leftover(self.directory / "redis.pid", "redis-server")
        if stale is not None:
            say(f"stopping the Redis (pid {stale}) an earlier run left on {relative(self.directory)}")
            end_pid(stale, signal.SIGTERM, 10)
        self.port = free_port()
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
             "--pidfile", str(self.directory / "redis.pid"), "--logfile", str(log), "--daemonize", "no",
             "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
            cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def ready() -> None:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if not s.recv(16).startswith(b"+PONG"):
                    raise ConnectionError("no PONG")

        self.wait_until_ready(ready, log)

    def stop(self) -> None:
        if self.process is not None:
            end(self.process, signal.SIGTERM, 10)


def settings_defaults() -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL) as the settings module would use them."""
    from django.core.exceptions import ImproperlyConfigured

    sys.path.insert(0, str(ROOT))
    name = os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        module = importlib.import_module(name)
    except ImproperlyConfigured as exc:
        raise Refused(f"the settings ({name}) refused this environment: {exc}") from None
    return module.DATABASE_URL, module.REDIS_URL


def run_command(command: list[str], env: dict[str, str]) -> int:
    """COMMAND in a session of its own, the stop signals we get passed on to all of it
    once (a Ctrl-C at the terminal reaches us, not it, so it is not interrupted twice)."""
    child = subprocess.Popen(command, env=env, start_new_session=True)

    def pass_on(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, pass_on)
    code = child.wait()
    # What COMMAND started may outlive it (make's shell ends at once on SIGTERM, while the
    # stack it started still finishes its jobs): the servers stop when all of it is gone.
    deadline = time.monotonic() + GROUP_GRACE
    while members(child.pid):
        if time.monotonic() > deadline:
            say(f"the command's processes {sorted(members(child.pid))} are still running after "
                f"{GROUP_GRACE:.0f} s: killing them")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    return 128 - code if code < 0 else code


def members(group: int) -> set[int]:
    """Live processes (not zombies: they have ended, whoever reaps them) in process group
    `group`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so read after its ')'.
            state, _ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(pgrp) == group and state not in {"Z", "X"}:
            found.add(int(stat.parent.name))
    return found


def interrupted(signum: int, _frame: object) -> None:
    """A stop signal while servers start: unwind, so that what was started is stopped."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=str(ROOT / ".run"), help="where private servers keep their files")
    parser.add_argument("--name", default=os.environ.get("PORT", "8000"), help="suffix of their directories")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND to run")
    run_dir = Path(args.run_dir).resolve()
    for sig in STOP_SIGNALS:
        signal.signal(sig, interrupted)

    # Read before the settings module is imported: a settings module may set defaults
    # into the environment, and only what the caller set counts as given.
    given = {name: name in os.environ for name in ("DATABASE_URL", "REDIS_URL")}
    env = dict(os.environ)
    started: list[PrivateServer] = []
    try:
        urls = dict(zip(("DATABASE_URL", "REDIS_URL"), settings_defaults(), strict=True))
        for name, what, default_port in (("DATABASE_URL", "PostgreSQL", 5432), ("REDIS_URL", "Redis", 6379)):
            url = urls[name]
            parts = urlsplit(url)
            host, port = parts.hostname or "127.0.0.1", parts.port or default_port
            if reachable(host, port):
                continue
            if given[name] or host not in LOOPBACK:
                raise Refused(
                    f"{what} is not reachable at {host}:{port}, where {name} points ({shown(url)}"
                    f"{'' if given[name] else ', the settings default'}). Start that server, or "
                    + (f"unset {name} to let `make run` start a private {what}." if given[name] else f"set {name}.")
                )
            server: PrivateServer
            if what == "PostgreSQL":
                server = PrivatePostgres(run_dir / f"postgres-{args.name}", superuser=parts.username or "postgres")
            else:
                server = PrivateRedis(run_dir / f"redis-{args.name}")
            started.append(server)
            server.start()
            env[name] = with_address(url, "127.0.0.1", server.port)
            say(f"{what} not reachable at {host}:{port}: started a private one on 127.0.0.1:{server.port}, "
                f"data in {relative(server.directory)} (stopped with the stack); {name}={shown(env[name])}")
            if server.moved_from is not None:
                say(f"{relative(server.moved_from)} is closed to the 'postgres' user that PostgreSQL runs as "
                    f"(a directory above the project is closed to other users), so its data lives in "
                    f"{relative(server.directory)} instead, kept for the next run from this checkout")
        if not started:
            # Nothing of ours to stop afterwards: COMMAND takes this process's place.
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe(command[0], command, env)
        return run_command(command, env)
    except Refused as refusal:
        print(f"private_services: {refusal}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for server in reversed(started):
            server.stop()
        if started:
            say("stopped the private " + " and ".join(s.what for s in started))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
