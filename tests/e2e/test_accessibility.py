"""axe-core (Deque's accessibility engine) on every main screen, light and
dark: no serious or critical violation."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.utils import timezone
from playwright.sync_api import Page, expect

from chat.models import Message, Reply
from imagejobs.actions import check_cancel
from imagejobs.models import ImageJob, Status
from imagejobs.transitions import do_fail
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation, request_picture, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AXE = Axe()


def _serious(page: Page) -> list[str]:
    results = AXE.run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


def _reply(conversation, state: str, text: str) -> None:
    """A chat model's reply as it shows mid-way, stopped or failed."""
    asked = Message.objects.create(
        conversation=conversation, role="user", text="hello", created_at=timezone.now()
    )
    message = Message.objects.create(
        conversation=conversation, role="assistant", text=text, created_at=timezone.now()
    )
    Reply.objects.create(
        message=message,
        answering=asked,
        state=state,
        error_code="chat_unreachable" if state == "failed" else "",
        saved_at=timezone.now(),
    )


def _status(job: ImageJob) -> str:
    return ImageJob.objects.get(pk=job.pk).status


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_violations_on_the_main_screens(
    page: Page, live_server_url, django_user_model, scheme, screenshots
):
    page.emulate_media(color_scheme=scheme)
    django_user_model.objects.create_user(
        "bob", password=PASSWORD, is_staff=True, is_superuser=True
    )
    bob = django_user_model.objects.get(username="bob")
    screens = {}
    # The first request starts the server's worker.
    page.goto(f"{live_server_url}/accounts/login/")
    screens["login"] = _serious(page)
    conversation = make_conversation(bob)
    done = request_picture(conversation, "a finished lighthouse", steps=2)
    wait_for(lambda: _status(done) == Status.COMPLETE)
    failed = request_picture(conversation, "a refused lighthouse")
    do_fail(failed.id, code="forge_rejected", detail="test")
    drawing = request_picture(conversation, "a lighthouse being drawn", steps=400)
    wait_for(lambda: _status(drawing) == Status.PROCESSING)
    waiting = request_picture(conversation, "a waiting lighthouse")
    for state, text in (("writing", "Happy to"), ("stopped", "Happy"), ("failed", "")):
        _reply(conversation, state, text)

    page.fill("#id_username", "bob")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    screens["conversation list"] = _serious(page)
    page.goto(f"{live_server_url}/conversations/{conversation.id}/")
    for status in ("complete", "error", "processing", "queued"):
        expect(page.locator(f'{CARDS}[data-status="{status}"]')).to_have_count(1)
    for state in ("writing", "stopped", "failed"):
        expect(page.locator(f'.message[data-reply="{state}"]')).to_have_count(1)
    page.screenshot(path=screenshots / f"cards-{scheme}.png", full_page=True)
    screens["conversation"] = _serious(page)
    page.goto(f"{live_server_url}/conversations/gallery/")
    screens["gallery"] = _serious(page)
    page.goto(f"{live_server_url}/admin/imagejobs/imagejob/queue/")
    screens["admin overview"] = _serious(page)

    for job in (drawing, waiting):
        check_cancel(bob, job.id)
    assert {name: found for name, found in screens.items() if found} == {}
