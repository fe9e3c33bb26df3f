"""Plain helpers for mami's tests: build the cast's things, drive the
simulator, wait for a condition, open a socket. Fixtures live in conftest.py."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from django.contrib.auth.models import AbstractUser
from django.db import connection, connections
from django.utils import timezone

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation, Message
from chat.presence import register_socket
from imagejobs.models import ImageJob, WorkerState
from simulators.server import SimServer

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parent.parent


# What htmx adds to its requests: the views answer with fragments then.
HTMX = {"HTTP_HX_REQUEST": "true"}


def sim_control(sim: SimServer, **body: object) -> dict[str, Any]:
    """Set a simulator's knobs over HTTP (either one), as a test on another
    box would; what it reports back."""
    base = sim.url.removesuffix(sim.url_path)
    response = httpx.post(f"{base}/_sim", json=body, timeout=5)
    response.raise_for_status()
    return response.json()


def dead_worker(worker_id: str, *, quiet_for: timedelta, **fields: Any) -> WorkerState:
    """The row of a worker on another box that stopped beating `quiet_for`
    ago (a lost machine: no process here to kill)."""
    now = timezone.now()
    return WorkerState.objects.create(
        id=worker_id,
        hostname="another-box",
        pid=4242,
        forge_url="http://forge.invalid",
        started_at=now - quiet_for - timedelta(minutes=5),
        last_seen=now - quiet_for,
        **fields,
    )


def serving[Sim: SimServer](sim: Sim) -> Iterator[Sim]:
    """`sim` started for a fixture to yield, and stopped after."""
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def counts() -> tuple[int, int, int]:
    """Conversations, messages and jobs stored: what a refused request
    must leave as it was."""
    return Conversation.objects.count(), Message.objects.count(), ImageJob.objects.count()


def stop_processes(*processes: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM each child still running, then wait for it (SIGKILL if it
    does not stop in time): no test leaves a process behind."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def make_conversation(owner: AbstractUser) -> Conversation:
    return Conversation.objects.create(owner=owner, title="test")


def open_page(conversation: Conversation, language: str = "en") -> None:
    """Record a page of `conversation` as open, as its socket does on
    connecting: cards and places are pushed only to conversations someone
    has open."""
    register_socket(conversation.owner, conversation.id, f"test.page!{uuid.uuid4().hex}", language)


def request_picture(conversation: Conversation, prompt: str, **parameters: object) -> ImageJob:
    """What posting `/image <prompt>` does, minus the HTTP. `parameters`
    (steps, size, model, …) are the job's from the start: a running worker
    may claim it the moment it is committed."""
    _question, answer = post_message(
        conversation, f"/image {prompt}", ImageRequest(prompt), parameters or None
    )
    return ImageJob.objects.get(message=answer)


def database_url() -> str:
    """DATABASE_URL of the database this test runs on, for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def closing(function: Callable[[], object]) -> Callable[[], None]:
    """Run `function` in a test thread, then close that thread's database
    connection (PostgreSQL refuses to drop a test database still in use)."""

    def run() -> None:
        try:
            function()
        finally:
            connections.close_all()

    return run


def drawing(job: ImageJob) -> bool:
    """Forge is drawing the job: processing, with progress reported."""
    row = ImageJob.objects.filter(pk=job.pk).values("status", "progress").first()
    return row["status"] == "processing" and row["progress"] > 0


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout:g}s")


def browser_socket(path: str, cookie: bytes | None = None, **headers: bytes):  # type: ignore[no-untyped-def]
    """A websocket to mami's ASGI app with what a browser on the page sends:
    its Origin and Host (override them by name, e.g. `origin=`), and the
    session cookie if given. Underscores in names become dashes."""
    from channels.testing import WebsocketCommunicator

    from mami.asgi import application

    sent = {"origin": b"http://localhost", "host": b"localhost", **headers}
    pairs = [(name.replace("_", "-").encode(), value) for name, value in sent.items()]
    if cookie:
        pairs.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=pairs)


async def open_socket(client, user, conversation_id, **headers: bytes):  # type: ignore[no-untyped-def]
    """A conversation socket as `user`'s browser opens it (session cookie, Origin)."""
    from channels.db import database_sync_to_async

    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = browser_socket(f"/ws/conversations/{conversation_id}/", cookie, **headers)
    connected, _ = await socket.connect()
    assert connected
    return socket


@contextlib.contextmanager
def real_daphne(log_dir: Path, *, proxy_headers: bool = False, **env: str) -> Iterator[str]:
    """mami served by a Daphne process of its own on the test database, as
    production runs it (no worker of its own): its base URL while the
    block runs, stopped after. `env`: settings for it."""
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    if proxy_headers:
        command.append("--proxy-headers")
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MAMI_EMBEDDED_WORKER": "0",
        **env,
    }
    log = (log_dir / f"daphne-{port}.log").open("ab")
    process = subprocess.Popen(
        [*command, "mami.asgi:application"], cwd=ROOT, env=environment, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"Daphne did not come up: {(log_dir / f'daphne-{port}.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield base
    finally:
        stop_processes(process)
        log.close()


def run_python(script: str, *, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    """`script` run by this Python in a process of its own, from the
    project's root: a hang fails the test (TimeoutExpired) instead of
    stopping the suite."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def session_id(user: AbstractUser) -> str:
    """A logged-in session of `user`, for a client outside the test process
    (a real server's pages and sockets): its `sessionid` cookie."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def free_port() -> int:
    """A TCP port nothing listens on (now)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Heartbeats, sweeps and liveness short enough for a test's time budget.
SHORT_WORKER_SETTINGS = {
    "MAMI_WORKER_HEARTBEAT_SECONDS": "0.2",
    "MAMI_WORKER_DEAD_AFTER_SECONDS": "1.5",
    "MAMI_SWEEP_INTERVAL": "0.3",
    "MAMI_WORKER_IDLE_SLEEP": "0.05",
    "MAMI_PROGRESS_WRITE_INTERVAL": "0.2",
    "FORGE_RETRY_BACKOFF": "0.1",
}


def runworker_process(
    worker_id: str,
    forge_url: str,
    *options: str,
    media_root: object,
    stderr: object = subprocess.DEVNULL,
    **env: str,
) -> subprocess.Popen:
    """`manage.py runworker` on the test database with SHORT_WORKER_SETTINGS
    (and `env` on top). Its logs (stdout) go with `stderr` when that is a
    file."""
    command = ["manage.py", "runworker", "--forge-url", forge_url, "--worker-id", worker_id]
    return subprocess.Popen(
        [sys.executable, *command, *options],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mami.settings",
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(media_root),
            "MAMI_SPOOL_DIR": str(Path(media_root).parent / "spool"),
            **SHORT_WORKER_SETTINGS,
            **env,
        },
        stdout=stderr
        if stderr not in (subprocess.DEVNULL, subprocess.PIPE)
        else subprocess.DEVNULL,
        stderr=stderr,
    )


class CuttableLink:
    """A TCP relay to `target` that a test can cut, as a database restart or
    a network fault does: `cut()` drops every relayed connection and
    refuses new ones until `restore()`. The server behind it is real."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket

        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[Any] = []
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self._closed:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                server.settimeout(None)
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: Any, sink: Any) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            import socket

            for end in (source, sink):
                # Shut down first: a close alone neither sends the FIN nor
                # wakes the other pump, blocked in recv on the same socket.
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self) -> None:
        import socket

        with self._lock:
            self._cut = True
            ends, self._open = self._open, []
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
