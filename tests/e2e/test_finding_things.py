"""The sidebar, rename and delete, the gallery and search, in Chromium,
on a desktop and on a phone."""

import re

import pytest
from playwright.sync_api import Page, expect

from chat.actions import post_message
from chat.models import Conversation
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _bob_with_a_conversation(page: Page, users, said: str, *, width: int, height: int):  # type: ignore[no-untyped-def]
    """Bob, with a conversation where he said `said`, on a `width` x `height` screen."""
    bob = users.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    post_message(conversation, said, None)
    page.set_viewport_size({"width": width, "height": height})
    return conversation


def test_sidebar_rename_delete_gallery_and_search(
    page: Page, live_server_url, django_user_model, screenshots
):
    old = _bob_with_a_conversation(
        page, django_user_model, "just saying hello", width=1440, height=900
    )
    log_in(page, live_server_url, "/conversations/")
    box = page.locator(".composer textarea")
    box.fill("/image a lighthouse at dusk")
    box.press("Enter")
    page.wait_for_url(re.compile(r".*/conversations/[0-9a-f-]+/$"))
    expect(page.locator("h1")).to_have_text("a lighthouse at dusk")
    expect(page.locator(CARDS).first).to_have_attribute("data-status", "complete", timeout=30_000)

    # The sidebar: both conversations, the newest first and marked current.
    links = page.locator(".sidebar__list a")
    expect(links).to_have_text(["a lighthouse at dusk", "test"])
    expect(links.first).to_have_attribute("aria-current", "page")
    page.screenshot(path=screenshots / "sidebar-desktop.png")

    page.get_by_text("Rename or delete").click()
    page.get_by_label("Title").fill("Lighthouses")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(page.locator("h1")).to_have_text("Lighthouses")
    expect(links.first).to_have_text("Lighthouses")

    # The gallery links back to the picture's message.
    page.get_by_role("link", name="Gallery").first.click()
    picture = page.locator(".gallery__item a")
    expect(picture).to_have_count(1)
    page.locator("#gallery-search").fill("nothing like it")
    page.locator("#gallery-search").press("Enter")
    expect(page.locator(".gallery")).to_contain_text("No picture’s prompt contains")
    page.locator("#gallery-search").fill("LIGHTHOUSE")
    page.locator("#gallery-search").press("Enter")
    picture.click()
    expect(page.locator(CARDS).first).to_be_in_viewport()

    # Search from the sidebar.
    page.locator("#sidebar-search").fill("hello")
    page.locator("#sidebar-search").press("Enter")
    expect(page.locator(".conversation-list a")).to_have_text(["test"])

    # Delete, after saying yes.
    page.goto(f"{live_server_url}/conversations/{old.id}/")
    page.get_by_text("Rename or delete").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete conversation").click()
    page.wait_for_url(re.compile(r".*/conversations/$"))
    expect(page.locator(".conversation-list a")).to_have_text(["Lighthouses"])
    assert not Conversation.objects.filter(pk=old.id).exists()


def test_the_sidebar_is_a_drawer_on_a_phone(
    page: Page, live_server_url, django_user_model, screenshots
):
    conversation = _bob_with_a_conversation(
        page, django_user_model, "a phone-sized hello", width=375, height=740
    )
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")
    drawer = page.locator(".sidebar")
    expect(drawer).not_to_have_attribute("open", "")
    expect(page.locator(".sidebar__list")).to_be_hidden()
    page.get_by_text("Conversations", exact=True).last.click()
    expect(page.locator(".sidebar__list")).to_be_visible()
    page.screenshot(path=screenshots / "sidebar-phone.png", full_page=True)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    wide = page.evaluate(
        "() => Array.from(document.querySelectorAll('body *'))"
        ".filter(e => e.getBoundingClientRect().right > 376)"
        ".map(e => e.tagName + '.' + e.className).slice(0, 8)"
    )
    assert width <= 375, f"nothing wider than the phone: {wide}"
