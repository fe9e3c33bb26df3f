"""What the benchmarks share: a throwaway database (SQLite, or the
PostgreSQL of `DATABASE_URL` with `--production`), a Forge simulator in a
process of its own (an independent stand-in, as a real Forge is), and the
embedded topology's event loop.

Import this module before anything from Django: it sets the environment up.
"""

import asyncio
import atexit
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRODUCTION = "--production" in sys.argv


def bench_database(url: str) -> str:
    """A new, empty database beside the one of `url`: `<name>_bench`."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')}_bench"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


MANAGE = [sys.executable, "manage.py"]
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="mami-bench-media-"))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mami.settings")
os.environ.setdefault("MAMI_LOG_LEVEL", "WARNING")
os.environ["MEDIA_ROOT"] = str(MEDIA_ROOT)
# The benchmark runs the worker itself (embedded: as a thread of this process).
os.environ["MAMI_EMBEDDED_WORKER"] = "0" if PRODUCTION else "1"
if PRODUCTION:
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        raise SystemExit(
            "--production needs DATABASE_URL (PostgreSQL; a role that may create "
            "databases) and REDIS_URL; `source .ci/services.sh` starts both and sets them"
        )
    os.environ["DATABASE_URL"] = bench_database(os.environ["DATABASE_URL"])
else:
    os.environ.pop("DATABASE_URL", None)
    os.environ["REDIS_URL"] = ""
    os.environ["MAMI_SQLITE_PATH"] = str(Path(tempfile.mkdtemp()) / "bench.sqlite3")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from mami.static_build import collect_if_changed  # noqa: E402

# The benchmarks load more than one user may queue.
settings.MAMI_MAX_UNFINISHED_PER_USER = 0
settings.MAMI_MAX_PICTURES_PER_MINUTE = 0
settings.ALLOWED_HOSTS = ["*"]


def topology() -> str:
    if PRODUCTION:
        return "PostgreSQL + Redis, runworker in its own process"
    return "embedded (SQLite, in-memory channel layer, worker in the server's process)"


def fresh_database() -> None:
    call_command("migrate", verbosity=0)
    # Pages name their static files by hash, as served.
    collect_if_changed()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def option(name: str, default: str | None = None) -> str | None:
    """`--name value` from the command line."""
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, what: str, timeout: float = 30) -> None:
    """Until `url` answers 200."""

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout, what)


def wait_until(condition, timeout: float, what: str, every: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    """`every`: seconds between two looks (each costs this process's CPU,
    which an embedded worker in it shares)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


class Simulator:
    """`manage.py forgesim` in its own process, so its CPU is not mami's."""

    def __init__(self, seconds_per_step: float, switch_seconds: float = 0.0) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        timing = ["--seconds-per-step", str(seconds_per_step)]
        timing += ["--switch-seconds", str(switch_seconds)]
        self.process = subprocess.Popen(
            [*MANAGE, "forgesim", "--port", port, *timing],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "DATABASE_URL": "", "MAMI_SQLITE_PATH": ":memory:"},
        )
        atexit.register(self.stop)
        wait_for_http(f"{self.url}/_sim", "the Forge simulator")

    def control(self, **body: object) -> dict:
        return httpx.post(f"{self.url}/_sim", json=body, timeout=10).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def runworker(forge_url: str, worker_id: str = "bench/gpu0") -> subprocess.Popen:
    """`manage.py runworker` in its own process, as in production."""
    return subprocess.Popen(
        [*MANAGE, "runworker", "--forge-url", forge_url, "--worker-id", worker_id],
        cwd=ROOT,
        env=dict(os.environ),
    )


def start_server(forge_url: str) -> tuple[str, subprocess.Popen]:
    """The web server of the topology on a free port, as `./scripts/run`
    and docs/deploy.md run it: Daphne, DEBUG off (embedded: the worker
    runs inside it)."""
    port = free_port()
    env = {**os.environ, "FORGE_URL": forge_url, "MAMI_LOG_LEVEL": "WARNING", "DEBUG": "0"}
    command = [os.path.join(os.path.dirname(MANAGE[0]), "daphne")]
    command += ["-p", str(port), "--websocket_timeout", "-1", "mami.asgi:application"]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/healthz", "the server")
    return url, server


_served: list[subprocess.Popen] = []


def session_cookie(user) -> str:  # type: ignore[no-untyped-def]
    """A logged-in session for `user`, as a Cookie header's value."""
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


def server_pid() -> int:
    """The web server of `serving`."""
    return _served[-1].pid


def spying(path: str | None) -> subprocess.Popen | None:
    """`--spy FILE`: py-spy (if installed) samples the web server while it
    holds the interpreter lock, into FILE (collapsed stacks)."""
    if path is None:
        return None
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "--rate", "250"]
    command += ["--format", "raw", "-o", path, "--pid", str(server_pid())]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spying(spy: subprocess.Popen | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def server_cpu_seconds() -> float:
    """CPU time (user + system, every thread's, living or ended) the web
    server of `serving` has used so far; embedded, its worker's is in it."""
    with open(f"/proc/{_served[-1].pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(forge_url: str) -> Iterator[str]:
    """The topology running (web server, and `runworker` in production)
    until the block ends; yields the server's base URL."""
    base, server = start_server(forge_url)
    _served.append(server)
    worker = runworker(forge_url) if PRODUCTION else None
    try:
        yield base
    finally:
        _served.remove(server)
        server.terminate()
        server.wait(timeout=30)
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)


def timed_gets(client: Any, url: str, *, warm: int, times: int) -> list[float]:
    """Seconds each of `times` GETs of `url` took (each answered 200), after
    `warm` untimed ones."""
    for _ in range(warm):
        client.get(url)
    took = []
    for _ in range(times):
        began = time.perf_counter()
        response = client.get(url)
        took.append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
    return took


def watch_pictures(
    user_name: str,
    pictures: int,
    *,
    steps: int,
    seconds_per_step: float,
    watch: Callable[[str, str, str, int], Awaitable[Any]],
) -> tuple[Any, list[Any]]:
    """A new user's conversation asks for `pictures` pictures of `steps`
    steps while its page's socket watches them (`watch(base URL,
    conversation id, session cookie, pictures)`, a script's own): what the
    watch returned, and the simulator's generations."""
    from django.contrib.auth import get_user_model
    from fanout import session_cookie

    from chat.actions import post_message
    from chat.intents import ImageRequest
    from chat.models import Conversation

    user = get_user_model().objects.create_user(user_name)
    conversation = Conversation.objects.create(owner=user)
    sim = Simulator(seconds_per_step)
    with serving(sim.url) as base:
        for n in range(pictures):
            post_message(conversation, "/image", ImageRequest(f"fox {n}"), {"steps": steps})
        seen = asyncio.run(watch(base, str(conversation.id), session_cookie(user), pictures))
        generations = sim.control()["stats"]["generations"]
    sim.stop()
    return seen, generations


def serve_loop() -> asyncio.AbstractEventLoop:
    """An event loop in a thread, as Daphne's is in the embedded topology:
    the in-memory layer's queues live there and every send goes to it."""
    from mami import push

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    push.set_server_loop(loop)
    return loop
