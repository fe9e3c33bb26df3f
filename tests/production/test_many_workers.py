"""The production topology: PostgreSQL, Redis, several `runworker` processes
each next to its own Forge, many users at once.

Runs only on PostgreSQL + Redis (`.ci/run` starts them; scripts/test
includes this folder when DATABASE_URL is postgres and REDIS_URL is set).
"""

import asyncio
import collections
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async as db
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import Client

from chat.models import Conversation
from imagejobs.models import ImageJob, JobTransition, Status, WorkerState
from simulators.forge import ForgeSimulator
from tests.helpers import browser_socket, runworker_process, stop_processes

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

USERS = 6
JOBS_PER_USER = 10
WORKERS = 3
COMPLETE = re.compile(r'<article id="job-([0-9a-f-]+)"[^>]*data-status="complete"')


@pytest.fixture(autouse=True)
def _production_topology() -> None:
    if (
        connection.vendor != "postgresql"
        or "redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]
    ):
        pytest.fail(
            "tests/production needs PostgreSQL and Redis: "
            "source .ci/services.sh, then run pytest with DATABASE_URL and REDIS_URL set."
        )


def _spawn(worker_id: str, forge_url: str, media_root: Path) -> subprocess.Popen:
    log = (media_root.parent / f"{worker_id}.log").open("wb")
    return runworker_process(worker_id, forge_url, media_root=media_root, stderr=log)


def _post_pictures(username: str, conversation_id: str) -> None:
    """One user typing `/image …` ten times, through the real view."""
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    for n in range(JOBS_PER_USER):
        response = client.post(
            f"/conversations/{conversation_id}/messages/",
            {"text": f"/image {username} picture {n}"},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 200
    # This thread's connection would keep the test database from being dropped.
    connections.close_all()


def _setup(django_user_model) -> list[tuple[str, str, bytes]]:
    cast = []
    for u in range(USERS):
        name = f"user{u}"
        user = django_user_model.objects.create_user(name, password="pw-" + name)
        conversation = Conversation.objects.create(owner=user, title=name)
        client = Client()
        client.force_login(user)
        cast.append((name, str(conversation.id), client.cookies["sessionid"].value.encode()))
    return cast


async def _collect_final_cards(socket: WebsocketCommunicator, want: int, deadline: float) -> set:
    done: set[str] = set()
    while len(done) < want:
        remaining = deadline - time.monotonic()
        try:
            frame = await socket.receive_from(timeout=max(remaining, 0.01))
        except TimeoutError:
            unfinished = await db(_unfinished)()
            raise AssertionError(
                f"only {len(done)} of {want} final cards arrived; unfinished: {unfinished}"
            ) from None
        done.update(COMPLETE.findall(frame))
    return done


def _unfinished() -> list[tuple[object, ...]]:
    """What a failed run left behind, for the failure message."""
    jobs = ImageJob.objects.exclude(status=Status.COMPLETE)
    workers = list(WorkerState.objects.values_list("id", "pid", "last_seen", "stopped_at"))
    return [*jobs.values_list("id", "status", "worker_id", "heartbeat_at"), *workers]


@pytest.mark.parametrize("kill_one", [False, True], ids=["all-alive", "one-killed"])
async def test_three_workers_sixty_jobs_six_users(django_user_model, tmp_path, kill_one):
    sims = [ForgeSimulator(seconds_per_step=0.02).start() for _ in range(WORKERS)]
    cast = await db(_setup)(django_user_model)
    sockets = []
    for _name, conversation_id, session in cast:
        socket = browser_socket(f"/ws/conversations/{conversation_id}/", b"sessionid=" + session)
        assert (await socket.connect())[0]
        sockets.append(socket)
    workers = [_spawn(f"gpu-{i}", sims[i].url, tmp_path / "media") for i in range(WORKERS)]
    try:
        await asyncio.gather(
            *(asyncio.to_thread(_post_pictures, name, cid) for name, cid, _ in cast)
        )
        if kill_one:
            await _kill_mid_job(workers[0])
        deadline = time.monotonic() + 180
        finals = await asyncio.gather(
            *(_collect_final_cards(s, JOBS_PER_USER, deadline) for s in sockets)
        )
    finally:
        stop_processes(*workers, timeout=15)
        for socket in sockets:
            await socket.disconnect()
        stats = [sim.describe()["stats"] for sim in sims]
        for sim in sims:
            sim.stop()

    jobs = await db(lambda: list(ImageJob.objects.select_related("message")))()
    # The jobs gpu-0 held when it died, known only now: a pipelined worker
    # may have finished the one seen before the kill landed, and may hold
    # two at once (one being stored while the next is drawn).
    victims = {job.id for job in jobs if job.recoveries}
    if kill_one:
        assert victims, "gpu-0 died holding a job, which was recovered"
        reasons = await db(
            lambda: set(
                JobTransition.objects.filter(job_id__in=victims, to_status="queued")
                .exclude(reason="")
                .values_list("reason", flat=True)
            )
        )()
        assert "recovered from lost worker gpu-0" in reasons
    assert len(jobs) == USERS * JOBS_PER_USER
    assert all(job.status == Status.COMPLETE for job in jobs)
    # Each user's socket got the final card of each of that user's jobs.
    by_conversation = collections.defaultdict(set)
    for job in jobs:
        by_conversation[str(job.message.conversation_id)].add(str(job.id))
    for (_name, conversation_id, _), seen in zip(cast, finals, strict=True):
        assert seen == by_conversation[conversation_id]

    completions = collections.Counter(p for s in stats for p in s["prompts_completed"])
    for job in jobs:
        log = await db(lambda job=job: list(job.transitions.values_list("to_status", flat=True)))()
        assert log.count("complete") == 1
        if job.id in victims:
            assert job.recoveries == 1
            assert log.count("processing") == 2
        else:
            # Processed exactly once: one claim, one Forge call, one picture.
            assert log == ["queued", "processing", "complete"]
            assert job.attempts == 1
            assert completions[job.prompt] == 1
    for index, sim_stats in enumerate(stats):
        assert sim_stats["max_concurrent_generations"] <= 1
        if not (kill_one and index == 0):
            # Only one worker ever drove this Forge.
            assert sim_stats["max_concurrent_requests"] == 1
    # The sync-to-async thread's connection would keep the test database open.
    await db(connections.close_all)()
    # Every live worker took part; the killed one finished only what it
    # completed before it died.
    used = {job.worker_id for job in jobs}
    assert {"gpu-1", "gpu-2"} <= used <= {"gpu-0", "gpu-1", "gpu-2"}
    if not kill_one:
        assert "gpu-0" in used


async def _kill_mid_job(worker: subprocess.Popen) -> None:
    """SIGKILL gpu-0 while it holds a job."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = await db(
            lambda: (
                ImageJob.objects.filter(worker_id="gpu-0", status=Status.PROCESSING)
                .values_list("id", flat=True)
                .first()
            )
        )()
        done = await db(lambda: ImageJob.objects.filter(status=Status.COMPLETE).count())()
        if held and done >= 10:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=5)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("gpu-0 never held a job to be killed")
