"""`make run` where PostgreSQL and Redis are not running: it starts private ones of its
own (scripts/private_services.py), serves on them, and stops them with the stack; a
DATABASE_URL / REDIS_URL that answers is used as given, and one that does not stops it
with a message and starts nothing.

The first test runs the real `make run` in a network namespace of its own, whose
127.0.0.1 has nothing on 5432 or 6379 (the machine's servers stay in the machine's
namespace, untouched), and talks to it from inside that namespace."""

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.live import ROOT, free_port

SCRIPT = ROOT / "scripts" / "private_services.py"
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def can_make_namespaces() -> str | None:
    """Why a network namespace cannot be made here, or None."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "network namespaces need root and iproute2's ip"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")) or shutil.which("redis-server") is None:
        # The namespace has no network for apt-get to install them with.
        return "Debian's postgresql and redis-server must be installed beforehand for this test"
    return None


@pytest.fixture
def namespace() -> Iterator[str]:
    reason = can_make_namespaces()
    if reason:
        pytest.skip(reason)
    name = f"aistatus-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        # Whatever is still inside (nothing, when the test passed) goes with it.
        for pid in pids_in(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)


def pids_in(namespace: str) -> list[int]:
    listing = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in listing.split()]


def inside(namespace: str, *command: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True,
                          timeout=timeout, check=False)


def alive(pid: int) -> bool:
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()
    except FileNotFoundError:
        return False


def a_fresh_shell(**extra: str) -> dict[str, str]:
    """The environment of someone typing `make run`: none of the suite's settings,
    database, Redis or secrets (config/settings_test.py put those into os.environ)."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **extra}


def a_clone_in_a_closed_directory(tmp_path: Path) -> Path:
    """A clone of this repository's committed tree in a directory of mode 700 (as a
    checkout under /root, or in any `mktemp -d`), sharing this tree's virtualenv."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    clone = closed / "aistatus"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    # The clone's lock file is as installed: make need not reinstall the shared virtualenv.
    (ROOT / ".venv" / ".installed").touch()
    return clone


@pytest.mark.timeout(300)
@pytest.mark.parametrize("checkout", ["this tree", "a clone in a directory of mode 700"])
def test_make_run_with_nothing_on_5432_and_6379_starts_private_servers_and_stops_them(namespace, tmp_path, checkout):
    for port in (5432, 6379):  # the premise: nothing answers at the defaults in here
        probe = inside(namespace, PYTHON, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)")
        assert probe.returncode != 0, f"something answers on 127.0.0.1:{port} inside the namespace"

    root = ROOT if checkout == "this tree" else a_clone_in_a_closed_directory(tmp_path)
    port = free_port()
    log_path = tmp_path / "make-run.log"
    env = a_fresh_shell(MEDIA_ROOT=str(tmp_path / "media"), WEB_WORKERS="1")
    with log_path.open("ab") as log:
        make = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    pg_dir, redis_dir = root / ".run" / f"postgres-{port}", root / ".run" / f"redis-{port}"
    if root != ROOT:
        # The `postgres` user cannot enter the clone: the cluster lives in its home.
        digest = hashlib.sha256(str(pg_dir).encode()).hexdigest()[:12]
        pg_dir = Path(pwd.getpwnam("postgres").pw_dir) / "aistatus" / f"postgres-{port}-{digest}"
    try:
        started = time.monotonic()
        deadline = started + 180
        status = ""
        while time.monotonic() < deadline and make.poll() is None:
            status = inside(namespace, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                            f"http://127.0.0.1:{port}/healthz").stdout
            if status == "200":
                break
            time.sleep(0.5)
        output = log_path.read_text(errors="replace")
        assert status == "200", f"no healthy stack (make exited {make.poll()}): {output[-4000:]}"
        print(f"make run answered /healthz 200 after {time.monotonic() - started:.1f} s")

        shown_pg_dir = f".run/postgres-{port}/" if root == ROOT else f"{pg_dir}/"
        said_pg = re.search(r"PostgreSQL not reachable at 127\.0\.0\.1:5432: started a private one on "
                            rf"127\.0\.0\.1:(\d+), data in {re.escape(shown_pg_dir)}", output)
        said_redis = re.search(r"Redis not reachable at 127\.0\.0\.1:6379: started a private one on "
                               rf"127\.0\.0\.1:(\d+), data in \.run/redis-{port}/", output)
        assert said_pg and said_redis, output[-4000:]
        pg_port, redis_port = int(said_pg.group(1)), int(said_redis.group(1))

        # Real servers, in the namespace, with their files under .run/.
        assert (pg_dir / "PG_VERSION").exists()
        postgres = int((pg_dir / "postmaster.pid").read_text().split()[0])
        redis_server = int((redis_dir / "redis.pid").read_text().split()[0])
        assert f"-D\0{pg_dir}\0".encode() in Path(f"/proc/{postgres}/cmdline").read_bytes()
        assert Path(f"/proc/{postgres}").stat().st_uid != 0, "PostgreSQL runs as an unprivileged user"
        assert f"127.0.0.1:{redis_port}".encode() in Path(f"/proc/{redis_server}/cmdline").read_bytes()
        assert {postgres, redis_server} <= set(pids_in(namespace))

        # The stack is on them: the demo data is in the private database, and the
        # private Redis has the settings the queue needs.
        seen = inside(namespace, PYTHON, "-c", (
            "import json, psycopg, redis\n"  # noqa: S608 - the child's Python source; its SQL is constant
            f"db = psycopg.connect(host='127.0.0.1', port={pg_port}, user='postgres', dbname='aistatus')\n"
            "demo = db.execute(\"SELECT count(*) FROM accounts_user WHERE username = 'demo'\").fetchone()[0]\n"
            f"r = redis.Redis(port={redis_port})\n"
            "print(json.dumps({'demo': demo, 'policy': r.config_get('maxmemory-policy')['maxmemory-policy'],"
            " 'keys': r.dbsize()}))"
        ))
        assert seen.returncode == 0, seen.stderr
        facts = json.loads(seen.stdout)
        assert facts["demo"] == 1 and facts["policy"] == "noeviction" and facts["keys"] > 0, facts

        # Ctrl-C at the terminal: SIGINT to make's process group.
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=60)
        output = log_path.read_text(errors="replace")
        assert "private_services: stopped the private PostgreSQL and Redis" in output, output[-3000:]
        assert not alive(postgres) and not alive(redis_server)
        assert not (pg_dir / "postmaster.pid").exists(), "PostgreSQL was shut down cleanly"
        assert pids_in(namespace) == [], "nothing of the stack is left running"
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        for directory in (pg_dir, redis_dir, root / ".run" / f"metrics-{port}"):
            shutil.rmtree(directory, ignore_errors=True)


def wrapped(
    env: dict[str, str], command: list[str], run_dir: Path, *, netns: str | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, PYTHON, str(SCRIPT), "--run-dir", str(run_dir), "--name", "t", "--", *command],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def open_run_dir() -> Iterator[Path]:
    """A run directory the `postgres` user may enter (pytest's tmp_path is mode 700)."""
    directory = Path(tempfile.mkdtemp(prefix="aistatus-run-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_the_private_servers_outlast_whatever_the_command_left_running(namespace, open_run_dir, tmp_path):
    """make's shell ends at once on SIGTERM while the stack it started still finishes its
    jobs: the servers stop only when nothing of the command's process group is left."""
    marker = tmp_path / "used-after-the-command-ended"
    late_user = (
        f"(sleep 2; {PYTHON} -c \"import os, psycopg, redis; "
        "psycopg.connect(os.environ['DATABASE_URL'].rsplit('/', 1)[0] + '/postgres').close(); "
        "redis.Redis.from_url(os.environ['REDIS_URL']).ping(); "
        f"open('{marker}', 'w')\") & exit 0"
    )
    result = wrapped(a_fresh_shell(DJANGO_ENV="development"), ["sh", "-c", late_user], open_run_dir, netns=namespace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists(), "the servers were still there for what the command left running"
    assert "stopped the private PostgreSQL and Redis" in result.stdout
    assert pids_in(namespace) == []


def test_a_data_directory_the_postgres_user_cannot_reach_moves_to_its_home_and_is_said(namespace, tmp_path):
    """As root, PostgreSQL runs as `postgres`, which cannot enter a directory closed to
    other users (a project under /root). Before, `make run` stopped there with a message;
    now the cluster lives in that user's home under the checkout's name, is said, and is
    found again by the next run."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    asked = closed / "run" / "postgres-t"
    moved = Path(pwd.getpwnam("postgres").pw_dir) / "aistatus" / f"postgres-t-{hashlib.sha256(str(asked).encode()).hexdigest()[:12]}"
    marker = tmp_path / "ran"
    try:
        for _ in range(2):
            result = wrapped(a_fresh_shell(DJANGO_ENV="development"), ["touch", str(marker)], closed / "run", netns=namespace)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"data in {moved}/" in result.stdout and f"{asked}/ is closed to the 'postgres' user" in result.stdout
            assert marker.exists() and (moved / "PG_VERSION").exists()
            assert pids_in(namespace) == []
    finally:
        shutil.rmtree(moved, ignore_errors=True)


def the_suites_services() -> dict[str, str]:
    db = connection.settings_dict
    return {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL}


PRINT_ENV_AND_PID = [PYTHON, "-c", (
    "import json, os; print(json.dumps({"
    "'pid': os.getpid(), 'db': os.environ.get('DATABASE_URL'), 'redis': os.environ.get('REDIS_URL')}))"
)]


@pytest.mark.parametrize("how", ["given", "default"])
def test_services_that_answer_are_used_as_they_are_and_nothing_is_started(how, tmp_path):
    """Given: the suite's own database and Redis as DATABASE_URL / REDIS_URL. Default: none
    set, and the machine's PostgreSQL and Redis answer on 127.0.0.1:5432 / :6379."""
    given = the_suites_services() if how == "given" else {}
    env = a_fresh_shell(DJANGO_ENV="development", **given)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([PYTHON, str(SCRIPT), "--run-dir", str(run_dir), "--name", "t", "--", *PRINT_ENV_AND_PID],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    child = json.loads(out)
    assert child["db"] == given.get("DATABASE_URL") and child["redis"] == given.get("REDIS_URL"), child
    assert child["pid"] == proc.pid, "with nothing to stop afterwards, the command replaces the script"
    assert "private" not in out + err
    assert not run_dir.exists()


@pytest.mark.parametrize(("name", "what", "url"), [
    ("DATABASE_URL", "PostgreSQL", "postgres://postgres:secret@127.0.0.1:{port}/aistatus"),
    ("REDIS_URL", "Redis", "redis://127.0.0.1:{port}/0"),
])
def test_a_given_url_where_nothing_answers_stops_with_a_message_and_starts_nothing(name, what, url, tmp_path):
    port = free_port()
    env = a_fresh_shell(DJANGO_ENV="development", **{**the_suites_services(), name: url.format(port=port)})
    marker = tmp_path / "ran"
    result = wrapped(env, [sys.executable, "-c", f"open({str(marker)!r}, 'w')"], tmp_path / "run")
    assert result.returncode == 1
    assert f"{what} is not reachable at 127.0.0.1:{port}, where {name} points" in result.stderr, result.stderr
    assert f"unset {name}" in result.stderr
    assert "secret" not in result.stderr, "the password is not printed"
    assert not marker.exists(), "the command did not run"
    assert not (tmp_path / "run").exists(), "no private server was started"
