"""A picture finishing while the tab is in the background: the title
counts it, a desktop notification says so (opted in), and screen readers
hear it."""

import httpx
import pytest
from playwright.sync_api import Page, expect

from imagejobs.models import ImageJob, Status
from imagejobs.workers import live_workers
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation, request_picture, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Chromium's own Notification, watched: each one shown is recorded.
WATCH_NOTIFICATIONS = """
window.__notes = [];
window.Notification = new Proxy(window.Notification, {
  construct(target, args) { window.__notes.push(args[0]); return new target(...args); }
});
"""
SET_HIDDEN = """(hidden) => {
  Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
  Object.defineProperty(document, "visibilityState",
                        { value: hidden ? "hidden" : "visible", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_picture_ready_in_a_background_tab(
    page: Page, live_server_url, django_user_model, context
):
    context.grant_permissions(["notifications"], origin=live_server_url)
    page.add_init_script(WATCH_NOTIFICATIONS)
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    first = request_picture(conversation, "a lighthouse at dawn", steps=30)
    request_picture(conversation, "a second lighthouse", steps=30)
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")
    title = page.title()

    toggle = page.locator("#notify-toggle")
    expect(toggle).to_have_text("Notify me")
    toggle.click()
    expect(toggle).to_have_text("Notifications on")
    expect(toggle).to_have_attribute("aria-pressed", "true")

    page.evaluate(SET_HIDDEN, True)
    # The server's own simulator: the picture after the one it draws now
    # (ours: a picture of an earlier test may still have been in its hands).
    wait_for(lambda: ImageJob.objects.get(pk=first.pk).status == Status.PROCESSING)
    # Its row is back within a heartbeat (each test empties the tables).
    wait_for(lambda: len(live_workers()) == 1)
    (worker,) = live_workers()
    httpx.post(f"{worker.forge_url}/_sim", json={"next": ["http422"]}).raise_for_status()
    cards = page.locator(CARDS)
    expect(cards.nth(0)).to_have_attribute("data-status", "complete", timeout=30_000)
    # Forge refuses the second one as soon as it is sent: a failure counts too.
    expect(cards.nth(1)).to_have_attribute("data-status", "error", timeout=30_000)
    expect(page).to_have_title(f"(2) {title}")
    # Which one ends first depends on the worker; each is told.
    told = {"Picture ready: a lighthouse at dawn", "Picture failed: a second lighthouse"}
    assert sorted(page.evaluate("window.__notes")) == sorted(told)
    assert page.locator("#announcer").text_content() in told

    page.evaluate(SET_HIDDEN, False)
    expect(page).to_have_title(title)
