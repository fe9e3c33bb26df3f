"""Pictures of the product: `./scripts/screenshots` runs this.

A throwaway database and media folder, the embedded server with its
simulator and chat-model simulator, a demo user with a few conversations,
then Chromium visits each main screen at 1440 px and 375 px, light and
dark, and writes docs/screenshots/<screen>-<desktop|phone>-<light|dark>.png.
The "talk" screen is a conversation with the chat model, in Turkish: a
request it drew from the English prompt it wrote, and a reply being written.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
WORK = Path(tempfile.mkdtemp(prefix="mami-shots-"))
sys.path.insert(0, str(ROOT))
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "mami.settings",
        "MAMI_SQLITE_PATH": str(WORK / "db.sqlite3"),
        "MEDIA_ROOT": str(WORK / "media"),
        "FORGE_URL": "",
        "REDIS_URL": "",
        "MAMI_EMBEDDED_WORKER": "1",
        "MAMI_SIMULATOR_SECONDS_PER_STEP": "0.08",
        "MAMI_LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("DATABASE_URL", None)

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from chat.actions import post_message, start_conversation  # noqa: E402
from chat.intents import parse_image_request  # noqa: E402
from imagejobs.models import ImageJob, Status  # noqa: E402
from mami.static_build import collect_if_changed  # noqa: E402

PASSWORD = "show-me-mami"
SIZES = {"desktop": (1440, 900), "phone": (375, 780)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def say(conversation, text: str, **parameters: object) -> None:  # type: ignore[no-untyped-def]
    post_message(conversation, text, parse_image_request(text), parameters or None)


def talk(page, base: str, conversation) -> None:  # type: ignore[no-untyped-def]
    """In a new conversation, in Turkish: a request the chat model draws,
    then a question, caught while the answer is being written."""
    page.goto(f"{base}/conversations/{conversation.id}/")
    page.select_option("#language-select", "tr")
    page.wait_for_selector("html[lang=tr]")
    box = page.locator(".composer textarea")
    box.fill("bana gün batımında bir deniz feneri çizer misin?")
    box.press("Enter")
    page.wait_for_selector(".job-card[data-status=complete]", timeout=60_000)
    box.fill("merhaba, sen kimsin?")
    box.press("Enter")
    page.wait_for_function(
        """() => {
          const writing = document.querySelector('[data-reply="writing"] .message__text');
          return writing && writing.innerText.length > 60;
        }""",
        timeout=30_000,
    )
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")


def wait_until(condition, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the pictures")
        time.sleep(0.2)


def main() -> None:
    call_command("migrate", verbosity=0)
    collect_if_changed()
    user = get_user_model().objects.create_user(
        "ada", password=PASSWORD, is_staff=True, is_superuser=True
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        # As `./scripts/run` serves.
        [str(Path(sys.executable).parent / "daphne"), "-p", str(port), "mami.asgi:application"],
        cwd=ROOT,
        # The server talks to its built-in chat-model simulator (the "talk"
        # screen); the demo messages posted from here get the rules' replies.
        env={**os.environ, "CHAT_MODEL_URL": "sim", "CHAT_SIMULATOR_TOKENS_PER_SECOND": "12"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _up(base), 30)
        older = start_conversation(user)
        say(older, "/image a red fox in the snow")
        say(older, "what can you do?")
        main_conversation = start_conversation(user)
        say(main_conversation, "/image a lighthouse at dusk, oil painting")
        say(main_conversation, "draw a cat asleep on a windowsill")
        wait_until(lambda: ImageJob.objects.filter(status=Status.COMPLETE).count() == 3)
        say(main_conversation, "/image a harbour at night", steps=600)
        say(main_conversation, "/image a mountain lake at sunrise")
        wait_until(
            lambda: ImageJob.objects.filter(status=Status.PROCESSING, progress__gte=30).exists()
        )
        OUT.mkdir(parents=True, exist_ok=True)
        screens = {
            "conversation": f"/conversations/{main_conversation.id}/",
            "conversations": "/conversations/",
            "gallery": "/conversations/gallery/",
            "login": "/accounts/login/",
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless=new", "--disable-gpu"]
            )
            for device, scheme, page in logged_in_pages(browser, base):
                for name, path in screens.items():
                    if name == "login":
                        continue
                    page.goto(base + path)
                    if name == "conversation":
                        page.wait_for_selector(".job-card__preview")
                        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                        page.wait_for_timeout(300)
                    page.screenshot(path=OUT / f"{name}-{device}-{scheme}.png")
            # After the others: the picture being drawn there is still drawing.
            for device, scheme, page in logged_in_pages(browser, base, login_shots=False):
                # Django's database calls, off Playwright's event loop.
                with ThreadPoolExecutor(1) as django_thread:
                    conversation = django_thread.submit(start_conversation, user).result()
                talk(page, base, conversation)
                page.screenshot(path=OUT / f"talk-{device}-{scheme}.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"Screenshots written to {OUT.relative_to(ROOT)}/")


def logged_in_pages(browser, base: str, *, login_shots: bool = True):  # type: ignore[no-untyped-def]
    """A page logged in as the demo user for each size and scheme (the
    login screen photographed on the way, if asked)."""
    for device, (width, height) in SIZES.items():
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": width, "height": height}, color_scheme=scheme
            )
            page = context.new_page()
            page.goto(f"{base}/accounts/login/")
            if login_shots:
                page.screenshot(path=OUT / f"login-{device}-{scheme}.png")
            page.fill("#id_username", "ada")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            yield device, scheme, page
            context.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
