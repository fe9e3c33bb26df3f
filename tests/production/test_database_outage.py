"""The database away for a while (a restart, a failover): the worker holds
the queue, every thread reconnects, and no picture Forge drew is lost.

The worker reaches the real PostgreSQL test database through a TCP link
the test cuts (`CuttableLink`): its connections drop and new ones are
refused, as during a restart, while the test itself keeps its own."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import websockets
from django.db import connection
from django.utils import timezone

from chat.models import Message, Reply
from imagejobs.models import ImageJob, Status, WorkerState
from imagejobs.tokens import create_token
from simulators.chat_model import reply_to
from tests.helpers import (
    CuttableLink,
    database_url,
    make_conversation,
    real_daphne,
    request_picture,
    runworker_process,
    session_id,
    sim_control,
    stop_processes,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.fail("tests/production needs PostgreSQL: source .ci/services.sh first.")


@pytest.fixture
def link() -> Iterator[CuttableLink]:
    url = urlsplit(database_url())
    cuttable = CuttableLink(url.hostname or "127.0.0.1", url.port or 5432)
    yield cuttable
    cuttable.close()


def _through(link: CuttableLink) -> str:
    url = urlsplit(database_url())
    credentials = url.netloc.rsplit("@", 1)[0]
    return urlunsplit(url._replace(netloc=f"{credentials}@127.0.0.1:{link.port}"))


def _worker(link: CuttableLink, forge_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    log = (tmp_path / "worker.log").open("ab")
    return runworker_process(
        "gpu-outage",
        forge_url,
        media_root=tmp_path / "media",
        stderr=log,
        DATABASE_URL=_through(link),
        FORGE_PROGRESS_INTERVAL="0.05",
    )


async def _socket_close_code(base: str, conversation_id: object, session: str) -> int | None:
    """How the server closed a page's socket; None if it stayed open."""
    url = f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation_id}/"
    headers = {"Cookie": f"sessionid={session}", "Origin": base}
    try:
        socket = await websockets.connect(url, additional_headers=headers)
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    try:
        async with asyncio.timeout(1.5):
            async for _message in socket:
                pass
    except TimeoutError:
        await socket.close()
        return None
    except websockets.ConnectionClosed:
        pass
    return socket.close_code


def _heartbeat_age(worker_id: str) -> float:
    last_seen = WorkerState.objects.get(pk=worker_id).last_seen
    return (timezone.now() - last_seen).total_seconds()


def _statuses(jobs: list[ImageJob]) -> list[str]:
    return list(
        ImageJob.objects.filter(pk__in=[job.pk for job in jobs]).values_list("status", flat=True)
    )


def _one_drawing_five_waiting(alice, forge, link, tmp_path):  # type: ignore[no-untyped-def]
    """Six pictures of a second each, the worker drawing the first."""
    forge.seconds_per_step = 0.05
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"owl {n}", steps=20) for n in range(6)]
    worker = _worker(link, forge.url, tmp_path)
    wait_for(lambda: Status.PROCESSING in _statuses(jobs), timeout=30)
    return jobs, worker


def _six_drawn_once_one_outage(forge, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """The worker's log, once its six pictures were each drawn once and it
    met one outage."""
    assert forge.stats.completed == 6, "no picture drawn twice"
    log = (tmp_path / "worker.log").read_text()
    assert log.count("database unreachable") == 1, log
    return log


def test_three_seconds_without_the_database_lose_nothing(alice, forge, link, tmp_path):
    jobs, worker = _one_drawing_five_waiting(alice, forge, link, tmp_path)
    try:
        link.cut()
        time.sleep(3)
        link.restore()
        back = time.monotonic()
        # The heartbeat thread reconnected: the worker is seen alive again.
        wait_for(lambda: _heartbeat_age("gpu-outage") < 2, timeout=10)
        assert time.monotonic() - back < 10
        wait_for(lambda: _statuses(jobs) == [Status.COMPLETE] * 6, timeout=60)
    finally:
        stop_processes(worker)
    log = _six_drawn_once_one_outage(forge, tmp_path)
    assert log.count("database is back") == 1, log
    assert "unknown" not in log.lower()


def test_a_picture_forge_answers_during_the_outage_is_stored_after_it(alice, forge, link, tmp_path):
    forge.seconds_per_step = 0.1  # 20 steps: two seconds
    conversation = make_conversation(alice)
    job = request_picture(conversation, "a heron", steps=20)
    worker = _worker(link, forge.url, tmp_path)
    try:
        wait_for(lambda: _statuses([job]) == [Status.PROCESSING], timeout=30)
        link.cut()
        # Forge finishes the picture while the database is away.
        wait_for(lambda: forge.stats.completed == 1, timeout=30)
        # Kept in the spool once the worker has read Forge's answer (a
        # full-size picture) and found the database away.
        wait_for(lambda: any((tmp_path / "spool").glob("*.json")), timeout=10)
        link.restore()
        wait_for(lambda: _statuses([job]) == [Status.COMPLETE], timeout=30)
    finally:
        stop_processes(worker)
    job.refresh_from_db()
    assert job.image
    assert (tmp_path / "media" / job.image.name).exists()
    assert forge.stats.completed == 1, "stored, not drawn again"
    assert not list((tmp_path / "spool").glob("*.json"))


def test_pages_and_the_api_answer_a_readable_503_meanwhile_and_recover(
    alice, link, tmp_path, settings
):
    conversation = make_conversation(alice)
    _token, key = create_token(alice, "outage")
    cookies = {"sessionid": session_id(alice)}
    page = f"/conversations/{conversation.id}/"
    with real_daphne(
        tmp_path, DATABASE_URL=_through(link), MAMI_METRICS_TOKEN="metrics-secret"
    ) as base:
        web = httpx.Client(base_url=base, cookies=cookies, timeout=10)
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert web.get(page).status_code == 200
        link.cut()
        try:
            answer = web.get(page)
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "5"
            assert "mami cannot reach its database right now" in answer.text
            assert "Traceback" not in answer.text
            answer = api.get("/api/image/status")
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "5"
            assert answer.json()["error"]["code"] == "service_unavailable"
            health = httpx.get(
                f"{base}/healthz", headers={"Authorization": "Bearer metrics-secret"}
            )
            assert health.status_code == 503
            assert health.json()["database"].startswith("error")
            assert health.json()["channel_layer"] == "ok"
            # A page's socket is closed with a code htmx retries (not 4xxx).
            code = asyncio.run(_socket_close_code(base, conversation.id, cookies["sessionid"]))
            assert code is not None
            assert code < 4000
        finally:
            link.restore()
        assert web.get(page).status_code == 200
        assert api.get("/api/image/status").status_code == 200
        # And it connects again once the database is back.
        assert asyncio.run(_socket_close_code(base, conversation.id, cookies["sessionid"])) is None
    log = next(tmp_path.glob("daphne-*.log")).read_text()
    assert "Traceback" not in log


def test_a_minute_without_the_database_holds_the_queue_and_fails_nothing(
    alice, forge, link, tmp_path
):
    cookies = {"sessionid": session_id(alice)}
    jobs, worker = _one_drawing_five_waiting(alice, forge, link, tmp_path)
    page = f"/conversations/{jobs[0].message.conversation_id}/"
    try:
        with real_daphne(tmp_path, DATABASE_URL=_through(link)) as base:
            web = httpx.Client(base_url=base, cookies=cookies, timeout=10)
            assert web.get(page).status_code == 200
            link.cut()
            time.sleep(5)
            drawn = forge.stats.txt2img_requests
            for _second in range(55):
                time.sleep(1)
                if _second % 10 == 0:
                    assert web.get(page).status_code == 503
            # Held: nothing more was sent to Forge while the database was away.
            assert forge.stats.txt2img_requests == drawn
            link.restore()
            wait_for(lambda: web.get(page).status_code == 200, timeout=10)
            wait_for(lambda: _statuses(jobs) == [Status.COMPLETE] * 6, timeout=60)
    finally:
        stop_processes(worker)
    _six_drawn_once_one_outage(forge, tmp_path)


def test_five_restarts_during_sixty_pictures_lose_none(alice, forge, link, tmp_path):
    forge.seconds_per_step = 0.01
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"wren {n}", steps=20) for n in range(60)]
    worker = _worker(link, forge.url, tmp_path)
    try:
        for _restart in range(5):
            time.sleep(1.5)
            link.cut()
            time.sleep(3)
            link.restore()
        wait_for(lambda: _statuses(jobs) == [Status.COMPLETE] * 60, timeout=120)
    finally:
        stop_processes(worker)
    assert forge.stats.max_concurrent_generations == 1, "never two at once"
    assert forge.stats.completed >= 60
    assert not ImageJob.objects.filter(status=Status.ERROR).exists()


def test_a_reply_written_through_an_outage_ends_whole(alice, chat_sim, link, tmp_path):
    sim_control(chat_sim, tokens_per_second=10)
    conversation = make_conversation(alice)
    cookies = {"sessionid": session_id(alice)}
    page = f"/conversations/{conversation.id}/"
    with real_daphne(
        tmp_path,
        DATABASE_URL=_through(link),
        CHAT_MODEL_URL=chat_sim.url,
        CHAT_MODEL="mami-chat-sim",
        CHAT_REPLY_SAVE_INTERVAL="0.2",
    ) as base:
        web = httpx.Client(base_url=base, cookies=cookies, timeout=10)
        web.get(page)
        answer = web.post(
            f"{page}messages/",
            data={"text": "tell me about herons"},
            headers={"X-CSRFToken": web.cookies["csrftoken"], "HX-Request": "true"},
        )
        assert answer.status_code == 200
        reply = Reply.objects.get()
        wait_for(lambda: len(Message.objects.get(pk=reply.pk).text) > 10, timeout=10)
        link.cut()
        time.sleep(2)
        link.restore()
        wait_for(lambda: Reply.objects.get(pk=reply.pk).state != "writing", timeout=30)
    assert Reply.objects.get(pk=reply.pk).state == "done"
    assert Message.objects.get(pk=reply.pk).text == reply_to("tell me about herons")
