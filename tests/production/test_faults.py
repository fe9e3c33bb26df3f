"""Infrastructure faults on the production topology never fail a picture:
Redis restarting mid-draw, a worker killed and restarted at once.

Each test runs its own Redis (`redis-server`, installed by .ci/services.sh)
or its own `runworker` processes, against the simulator over HTTP, on the
PostgreSQL test database.
"""

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async as db
from django.db import connection, connections
from django.test import Client

from chat.models import Conversation, OpenSocket
from imagejobs.models import ImageJob, JobTransition, Status
from simulators.forge import ForgeSimulator
from tests.helpers import (
    browser_socket,
    free_port,
    request_picture,
    runworker_process,
    stop_processes,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

COMPLETE = re.compile(r'<article id="job-([0-9a-f-]+)"[^>]*data-status="complete"')
# Faster progress than SHORT_WORKER_SETTINGS: kills land mid-draw.
FAST = {"FORGE_PROGRESS_INTERVAL": "0.05"}


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.fail("tests/production needs PostgreSQL: source .ci/services.sh first.")


class RedisServer:
    """A throwaway redis-server without persistence, as Redis restarts lose
    everything in memory (groups included)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: .ci/services.sh installs it"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.kill()


def _spawn_worker(worker_id: str, forge_url: str, tmp: Path, **env: str) -> subprocess.Popen:
    log = (tmp / f"{worker_id}.log").open("ab")
    return runworker_process(
        worker_id, forge_url, media_root=tmp / "media", stderr=log, **FAST, **env
    )


def _statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in ImageJob.objects.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


async def _wait_all_complete(total: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts = await db(_statuses)()
        assert not counts.get(Status.ERROR), f"a job failed: {counts}"
        if counts.get(Status.COMPLETE) == total:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all complete after {seconds}s: {await db(_statuses)()}")


async def _close(socket) -> None:  # type: ignore[no-untyped-def]
    """Close a test socket whose consumer may have died with Redis (Daphne
    then closes the browser's socket; the exception is the consumer's), or
    was cancelled by the test client when a receive timed out (its
    `disconnect` then re-raises that CancelledError)."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await socket.disconnect()


async def test_a_redis_restart_mid_draw_fails_no_job(
    django_user_model, redis_server, settings, tmp_path
):
    """Redis killed while a picture is drawn and back 2 s later: every job
    completes, none is drawn twice, and a page that reconnects (as htmx
    does) and asks for its cards gets every final card."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_server.url, "socket_timeout": 30}]},
        }
    }
    sim = ForgeSimulator(seconds_per_step=0.05).start()
    alice = await db(django_user_model.objects.create_user)("alice", password="pw")
    conversation = await db(Conversation.objects.create)(owner=alice, title="fault")
    jobs = [await db(request_picture)(conversation, f"fox {n}", steps=8) for n in range(10)]
    ids = [str(job.id) for job in jobs]
    client = Client()
    await db(client.force_login)(alice)
    cookie = b"sessionid=" + client.cookies["sessionid"].value.encode()
    path = f"/ws/conversations/{conversation.id}/"

    socket = browser_socket(path, cookie)
    assert (await socket.connect())[0]
    worker = _spawn_worker("gpu-redis", sim.url, tmp_path, REDIS_URL=redis_server.url)
    finals: set[str] = set()
    try:
        # Kill Redis while the second picture is drawn.
        deadline = time.monotonic() + 60
        while not await db(
            lambda: (
                ImageJob.objects.filter(status=Status.COMPLETE).count() >= 1
                and ImageJob.objects.filter(status=Status.PROCESSING, progress__gt=0).exists()
            )
        )():
            assert time.monotonic() < deadline, "the worker never started drawing"
            await asyncio.sleep(0.02)
        redis_server.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(2)
        redis_server.start()
        restarted_at = time.monotonic()

        # The page: its socket died with Redis; it reconnects and asks
        # for the cards it shows, then keeps listening.
        deadline = time.monotonic() + 90
        while len(finals) < len(ids):
            assert time.monotonic() < deadline, f"only {len(finals)} final cards arrived"
            try:
                frame = await socket.receive_from(timeout=1)
            except Exception:  # closed with Redis, or silent: reconnect as the page does
                await _close(socket)
                socket = browser_socket(path, cookie)
                if not (await socket.connect(timeout=5))[0]:
                    await asyncio.sleep(0.5)
                    continue
                await socket.send_to(text_data=json.dumps({"sync": ids}))
                continue
            finals.update(COMPLETE.findall(frame))
        await _wait_all_complete(len(ids), 30)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
        await _close(socket)
        stats = sim.describe()["stats"]
        sim.stop()
        await db(connections.close_all)()

    assert finals == set(ids)
    assert restarted_at - killed_at >= 2
    # Each picture drawn once: no failure, no redraw, no retry.
    assert stats["completed"] == len(ids)
    errors = await db(lambda: JobTransition.objects.filter(to_status=Status.ERROR).count())()
    assert errors == 0


def _recoveries(job_id: object) -> int:
    return JobTransition.objects.filter(job_id=job_id, reason__startswith="recovered").count()


def _settled(job_id: object, recoveries_before: int) -> bool:
    """Recovered since, or finished before the kill landed."""
    done = ImageJob.objects.filter(pk=job_id, status=Status.COMPLETE).exists()
    return done or _recoveries(job_id) > recoveries_before


def _kill_and_restart(worker: subprocess.Popen, spawn) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    worker.send_signal(signal.SIGKILL)
    # Not reaped yet on purpose: a restarter (systemd, a shell) may start the
    # new process while the old one is still a zombie.
    return spawn()


async def test_a_worker_killed_and_restarted_at_once_takes_over(django_user_model, tmp_path):
    """SIGKILL the worker mid-draw and start it again at once (its old
    process not yet reaped, as under a restarter), five times during a
    30-job run: the new process takes over its id as soon as it is up,
    although the liveness window (30 s here) has not passed; every job
    completes, none is drawn more than twice."""
    sim = ForgeSimulator(seconds_per_step=0.02).start()
    alice = await db(django_user_model.objects.create_user)("alice", password="pw")
    conversation = await db(Conversation.objects.create)(owner=alice, title="kills")
    # Long enough for the progress write that shows a job is being drawn.
    for n in range(30):
        await db(request_picture)(conversation, f"owl {n}", steps=30)

    def spawn() -> subprocess.Popen:
        return _spawn_worker("gpu-restart", sim.url, tmp_path, MAMI_WORKER_DEAD_AFTER_SECONDS="30")

    processes = [spawn()]
    back_after = []
    try:
        for kill in range(5):
            held = await _drawing(done_at_least=2 * kill)
            recovered = await db(lambda held=held: _recoveries(held))()
            killed_at = time.monotonic()
            processes.append(_kill_and_restart(processes[-1], spawn))
            # The new process puts the held job back in line as it starts
            # (unless it was finished just before the kill).
            while not await db(partial(_settled, held, recovered))():
                assert time.monotonic() - killed_at < 20, f"kill {kill}: the job stayed stuck"
                await asyncio.sleep(0.02)
            back_after.append(time.monotonic() - killed_at)
        await _wait_all_complete(30, 90)
    finally:
        stop_processes(*processes, timeout=15)
        stats = sim.describe()["stats"]
        sim.stop()
        await db(connections.close_all)()

    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "in use by pid" not in logs
    # Back in line within a process start (seconds), not the 30 s window.
    assert max(back_after) < 15, back_after
    drawn: dict[str, int] = {}
    for prompt in stats["prompts_completed"]:
        drawn[prompt] = drawn.get(prompt, 0) + 1
    assert len(drawn) == 30
    assert max(drawn.values()) <= 2
    assert await db(lambda: JobTransition.objects.filter(to_status=Status.ERROR).count())() == 0


async def _drawing(*, done_at_least: int) -> object:
    """The id of a job being drawn (progress shown), once that many are done."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = await db(
            lambda: (
                ImageJob.objects.filter(status=Status.PROCESSING, progress__gt=0)
                .values_list("id", flat=True)
                .first()
                if ImageJob.objects.filter(status=Status.COMPLETE).count() >= done_at_least
                else None
            )
        )()
        if held is not None:
            return held
        await asyncio.sleep(0.005)
    raise AssertionError("the worker never drew")


async def test_redis_restarts_give_every_socket_slot_back(
    django_user_model, redis_server, tmp_path
):
    """A socket whose consumer dies with Redis gives its slot back (before,
    its refresher kept the slot fresh for good: three restarts with one
    tab open cost three of the user's sockets)."""
    from tests.helpers import real_daphne

    alice = await db(django_user_model.objects.create_user)("alice")
    conversation = await db(Conversation.objects.create)(owner=alice, title="t")
    client = Client()
    await db(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    def rows() -> int:
        return OpenSocket.objects.filter(user=alice).count()

    with real_daphne(tmp_path, REDIS_URL=redis_server.url, MAMI_MAX_SOCKETS_PER_USER="3") as base:
        url = f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation.id}/"
        headers = {"Cookie": cookie, "Origin": base}

        async def is_open(socket) -> bool:  # type: ignore[no-untyped-def]
            try:
                await asyncio.wait_for(socket.recv(), 0.5)
            except TimeoutError:
                return True
            except websockets.ConnectionClosed:
                return False
            return True

        for _restart in range(3):
            # The page's tab, (re)connected as htmx does after a close.
            tab = await websockets.connect(url, additional_headers=headers)
            assert await is_open(tab)
            redis_server.kill()
            await asyncio.sleep(1)
            redis_server.start()
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(tab.wait_closed(), 10)
        for _tick in range(100):
            if not await db(rows)():
                break
            await asyncio.sleep(0.1)
        assert await db(rows)() == 0, "every dead socket gave its slot back"
        tabs = [await websockets.connect(url, additional_headers=headers) for _ in range(3)]
        assert [await is_open(tab) for tab in tabs] == [True, True, True]
        for tab in tabs:
            await tab.close()
