"""Two Daphne processes on PostgreSQL + Redis: the one that took the
message writes the reply, and the other serves its page meanwhile, shows
it growing, stops it, and retries it once the first has died."""

import asyncio
import html
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async as db
from django.conf import settings
from django.db import connection
from django.test import Client

from chat.models import Conversation, Message, Reply
from imagejobs.transitions import do_cancel
from simulators.chat_model import reply_to
from tests.helpers import ROOT, database_url, free_port, request_picture, sim_control

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REPLY = re.compile(
    r'<li id="message-(?P<id>[0-9a-f-]+)"[^>]*data-reply="(?P<state>\w+)"[^>]*>(?P<body>.*?)</li>',
    re.S,
)
TEXT = re.compile(r'class="message__text">(.*?)</p>', re.S)
# A dead writer's reply fails after CHAT_MODEL_TIMEOUT + 2 saves + 5 s.
MODEL_TIMEOUT = 2


@pytest.fixture(autouse=True)
def _production_topology() -> None:
    if (
        connection.vendor != "postgresql"
        or "redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]
    ):
        pytest.fail("tests/production needs PostgreSQL and Redis (see .ci/services.sh).")


@pytest.fixture
def web_process(chat_sim, tmp_path: Path) -> Iterator[Callable[[], tuple[str, subprocess.Popen]]]:
    """Start a Daphne serving mami on the test database and Redis, with no
    worker of its own, talking to the test's chat model."""
    sim_control(chat_sim, tokens_per_second=10)
    processes: list[subprocess.Popen] = []

    def start() -> tuple[str, subprocess.Popen]:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "MAMI_EMBEDDED_WORKER": "0",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "CHAT_MODEL_URL": chat_sim.url,
            "CHAT_MODEL": "mami-chat-sim",
            "CHAT_MODEL_TIMEOUT": str(MODEL_TIMEOUT),
            "CHAT_REPLY_SAVE_INTERVAL": "0.2",
        }
        log = (tmp_path / f"daphne-{port}.log").open("ab")
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        process = subprocess.Popen(
            [*command, "mami.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                return base, process
            except httpx.TransportError:
                assert time.monotonic() < deadline, "Daphne did not come up"
                time.sleep(0.05)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


class Page:
    """One browser page of a conversation on one server: its cookies, its
    CSRF token and its socket."""

    def __init__(self, base: str, conversation: Conversation, session: str) -> None:
        self.base = base
        self.conversation = conversation
        self.path = f"/conversations/{conversation.id}/"
        self.web = httpx.AsyncClient(base_url=base, cookies={"sessionid": session})
        self.session = session
        self.socket: websockets.ClientConnection | None = None

    async def open(self) -> str:
        page = await self.web.get(self.path)
        assert page.status_code == 200
        url = f"{self.base.replace('http://', 'ws://')}/ws{self.path}"
        headers = {"Cookie": f"sessionid={self.session}", "Origin": self.base}
        self.socket = await websockets.connect(url, additional_headers=headers)
        return page.text

    async def post(self, path: str, **data: str) -> httpx.Response:
        return await self.web.post(
            path,
            data=data,
            headers={
                "X-CSRFToken": self.web.cookies["csrftoken"],
                "HX-Request": "true",
                "Origin": self.base,
            },
        )

    async def reply_pushes(self, message_id: str, until: Callable[[str, str], bool]) -> list:
        """(state, text) of each push of the reply, until `until` holds."""
        assert self.socket is not None
        seen = []
        while True:
            frame = await asyncio.wait_for(self.socket.recv(), 30)
            for match in REPLY.finditer(str(frame)):
                if match["id"] != message_id:
                    continue
                shown = TEXT.search(match["body"])
                seen.append((match["state"], html.unescape(shown[1]) if shown else ""))
                if until(*seen[-1]):
                    return seen

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        await self.web.aclose()


def _cast(django_user_model, name: str = "talker") -> tuple[Conversation, str]:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(name)
    client = Client()
    client.force_login(user)
    return Conversation.objects.create(owner=user), client.cookies["sessionid"].value


async def _two_pages(django_user_model, web_process) -> tuple[Page, Page, subprocess.Popen]:  # type: ignore[no-untyped-def]
    """The same user's conversation open on two web processes: the first
    takes the message (and writes the reply), the second only watches."""
    (writer_base, writer_process), (reader_base, _) = web_process(), web_process()
    conversation, session = await db(_cast)(django_user_model)
    writer = Page(writer_base, conversation, session)
    reader = Page(reader_base, conversation, session)
    await writer.open()
    await reader.open()
    return writer, reader, writer_process


async def _ask(page: Page, text: str) -> str:
    answer = await page.post(f"{page.path}messages/", text=text)
    assert answer.status_code == 200, answer.text
    return next(m["id"] for m in REPLY.finditer(answer.text))


async def test_one_process_writes_the_reply_another_shows_it_growing_and_stops_it(
    django_user_model, web_process
):
    writer, reader, _ = await _two_pages(django_user_model, web_process)
    try:
        message_id = await _ask(writer, "hello there")
        full = reply_to("hello there")

        grown = await reader.reply_pushes(message_id, lambda _state, text: len(text) > 30)
        assert len(grown) > 2, "word by word on the other process's socket"
        assert all(full.startswith(text) for _state, text in grown), "in order"

        # A page the other process serves mid-reply shows the text so far.
        again = Page(reader.base, reader.conversation, reader.session)
        shown = REPLY.search(await again.open())
        await again.close()
        assert shown
        assert shown["state"] == "writing"
        so_far = html.unescape(TEXT.search(shown["body"])[1])
        assert full.startswith(so_far)
        assert len(so_far) >= len(grown[-1][1]) - 10

        # Stop, asked of the process that is not writing it.
        asked = time.monotonic()
        assert (await reader.post(f"/conversations/replies/{message_id}/stop/")).status_code == 200
        ended = await reader.reply_pushes(message_id, lambda state, _text: state != "writing")
        assert ended[-1][0] == "stopped"
        assert time.monotonic() - asked < 2
        kept = ended[-1][1]
        assert full.startswith(kept)
        assert len(so_far) <= len(kept) < len(full)
    finally:
        await writer.close()
        await reader.close()
    saved = await db(Message.objects.get)(pk=message_id)
    assert saved.text == kept, "what was written is kept"
    assert (await db(Reply.objects.get)(pk=message_id)).state == "stopped"


async def test_a_reply_whose_process_died_fails_on_the_other_and_is_retried_there(
    django_user_model, web_process, chat_sim
):
    chat_sim.tokens_per_second = 2
    writer, reader, writer_process = await _two_pages(django_user_model, web_process)
    try:
        message_id = await _ask(writer, "hello there")
        await reader.reply_pushes(message_id, lambda _state, text: len(text) > 10)
        writer_process.send_signal(signal.SIGKILL)
        writer_process.wait(timeout=5)
        await reader.close()

        # The reader's page reconnects once the dead writer's time is up.
        quiet = MODEL_TIMEOUT + 2 * 0.2 + 5
        await asyncio.sleep(quiet + 0.5)
        reader = Page(reader.base, reader.conversation, reader.session)
        await reader.open()
        failed = await reader.reply_pushes(message_id, lambda state, _text: state != "writing")
        assert failed[-1][0] == "failed"
        assert (await db(Reply.objects.get)(pk=message_id)).error_code == "chat_interrupted"

        # Retry on the live process writes the whole reply there.
        chat_sim.tokens_per_second = 40
        answer = await reader.post(f"/conversations/replies/{message_id}/retry/")
        assert answer.status_code == 200, answer.text
        retried = next(m["id"] for m in REPLY.finditer(answer.text) if m["id"] != message_id)
        done = await reader.reply_pushes(retried, lambda state, _text: state != "writing")
        assert done[-1] == ("done", reply_to("hello there"))
    finally:
        await writer.close()
        await reader.close()


async def _place_shown(page: Page, job_hex: str, place: int) -> None:
    assert page.socket is not None
    while True:
        frame = str(await asyncio.wait_for(page.socket.recv(), 15))
        if f'id="place-{job_hex}"' in frame and f"#{place} in line" in frame:
            return


async def test_a_queue_move_reaches_the_pages_of_every_web_process(django_user_model, web_process):
    """Each process's relay hands out the move's one event to its pages."""
    head_conversation, _ = await db(_cast)(django_user_model, "head")
    head = await db(request_picture)(head_conversation, "the head of the line")
    pages = []
    for name in ("ann", "ben"):
        base, _process = web_process()
        conversation, session = await db(_cast)(django_user_model, name)
        job = await db(request_picture)(conversation, f"{name}'s fox")
        page = Page(base, conversation, session)
        await page.open()
        pages.append((page, job))
    try:
        for place, (page, job) in enumerate(pages, start=2):
            await _place_shown(page, job.id.hex, place)
        await db(do_cancel)(head.id)
        for place, (page, job) in enumerate(pages, start=1):
            await _place_shown(page, job.id.hex, place)
    finally:
        for page, _job in pages:
            await page.close()
