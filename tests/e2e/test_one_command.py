"""`./scripts/run` as a family or a small team runs it for months: served
by Daphne with DEBUG off, reached over the LAN at the address it was given,
and stopped with Ctrl+C without losing the picture being drawn or anyone's
login."""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CARDS = "#messages .job-card"


def lan_address() -> str:
    """This machine's address on its network (what another device would
    type), not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        # A UDP connect sends nothing; it only picks the outgoing interface.
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    assert not address.startswith("127."), "this machine has no non-loopback address"
    return address


class ScriptRun:
    """One `./scripts/run` in its own session, as a terminal runs it."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        clean = {
            key: value
            for key, value in os.environ.items()
            # The one command is the embedded default, whatever CI runs.
            if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
            and not key.startswith(("MAMI_", "PYTEST"))
        }
        self.process = subprocess.Popen(
            ["bash", "scripts/run"],
            cwd=ROOT,
            env={**clean, "MAMI_DATA_DIR": str(data_dir), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output: list[str] = []

    def wait_for_banner(self) -> str:
        """The login it printed, once the server answers."""
        deadline = time.monotonic() + 120
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if "Press Ctrl+C to stop." in line:
                found = re.search(r"Login: demo / (\S+)", "".join(self.output))
                assert found, "".join(self.output)
                return found[1]
        raise AssertionError("./scripts/run did not start:\n" + "".join(self.output))

    def press_ctrl_c(self) -> str:
        """What a terminal does on Ctrl+C: SIGINT to the whole foreground
        group. Returns everything it printed."""
        os.killpg(self.process.pid, signal.SIGINT)
        rest, _ = self.process.communicate(timeout=60)
        self.output.append(rest)
        return "".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def runs() -> Iterator[list[ScriptRun]]:
    started: list[ScriptRun] = []
    yield started
    for run in started:
        run.kill()


def _fetch(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def _processes_running(word: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if word in command:
            found.append(command)
    return found


def _ask(page: Page, text: str) -> None:
    box = page.locator(".composer textarea")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def test_the_one_command_serves_the_lan_for_real_and_stops_without_losing_anything(
    browser: Browser, runs: list[ScriptRun], tmp_path: Path, screenshots: Path
):
    address, port = lan_address(), free_port()
    site = f"http://{address}:{port}"
    env = {
        "MAMI_URL": site,
        "MAMI_HOST": "0.0.0.0",
        # Slow enough to stop it mid-picture, quick enough for a test.
        "MAMI_SIMULATOR_SECONDS_PER_STEP": "0.25",
    }
    runs.append(ScriptRun(tmp_path / "data", **env))
    password = runs[0].wait_for_banner()
    assert f"mami is running at {site}/" in "".join(runs[0].output)

    # Daphne itself, DEBUG off: mami's own 404, no development server.
    assert not _processes_running("manage.py runserver")
    assert _processes_running(f"-p {port} --websocket_timeout -1 mami.asgi:application")
    status, _headers, body = _fetch(f"{site}/no/such/page/")
    assert status == 404
    assert "Nothing here" in body
    assert "URLconf" not in body
    assert "Traceback" not in body

    # Static files by hashed name, cached for a year.
    _status, _headers, login_page = _fetch(f"{site}/accounts/login/")
    stylesheet = re.search(r'href="(/static/css/mami\.[0-9a-f]{12}\.css)"', login_page)
    assert stylesheet, login_page
    status, headers, _body = _fetch(site + stylesheet[1])
    assert status == 200
    assert "max-age=315360000" in headers["Cache-Control"]
    assert "immutable" in headers["Cache-Control"]

    # A browser on the LAN address logs in and draws.
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site}/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("What should I draw?")
    _ask(page, "/image a lighthouse on the LAN")
    page.wait_for_url(re.compile(r".*/conversations/[0-9a-f-]+/$"))
    first = page.locator(CARDS).first
    expect(first).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(first.locator("img.job-card__image")).to_be_visible()
    page.screenshot(path=screenshots / "one-command-lan.png", full_page=True)

    # Ctrl+C while the next picture is drawn: it goes back to the queue.
    _ask(page, "/image a second lighthouse")
    second = page.locator(CARDS).nth(1)
    expect(second).to_have_attribute("data-status", "processing", timeout=30_000)
    conversation_url = page.url
    cookies = context.cookies()
    context.close()
    printed = runs[0].press_ctrl_c()
    assert "processing -> queued (worker stopping)" in printed, printed
    assert "Traceback" not in printed, printed
    with sqlite3.connect(tmp_path / "data" / "db.sqlite3") as database:
        statuses = [row[0] for row in database.execute("SELECT status FROM imagejobs_imagejob")]
    assert sorted(statuses) == ["complete", "queued"]

    # Started again: the same login still holds (the secret was kept), and
    # the handed-back picture is drawn.
    runs.append(ScriptRun(tmp_path / "data", **env))
    assert runs[1].wait_for_banner() == password
    context = browser.new_context()
    context.add_cookies(cookies)
    page = context.new_page()
    page.goto(conversation_url)
    assert page.url == conversation_url, "the session did not survive the restart"
    expect(page.locator(CARDS).nth(1)).to_have_attribute("data-status", "complete", timeout=30_000)
    context.close()
