"""The composer behaves like a chat: Enter sends, Shift+Enter breaks the
line, the new card comes into view, and pushes scroll the page only for a
reader already at the bottom."""

import pytest
from playwright.sync_api import Page, expect

from chat.actions import post_message
from chat.models import Message
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCROLL_Y = "() => Math.round(window.scrollY)"
AT_BOTTOM = (
    "() => { const p = document.scrollingElement;"
    " return p.scrollHeight - p.scrollTop - p.clientHeight < 48; }"
)


def test_enter_shift_enter_and_scrolling(page: Page, live_server_url, django_user_model):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    for n in range(15):  # a page taller than the window
        post_message(conversation, f"hello {n}", None)
    page.set_viewport_size({"width": 1280, "height": 700})
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")

    box = page.locator(".composer textarea")
    box.click()
    page.keyboard.type("/image a fox")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("in the snow")
    expect(box).to_have_value("/image a fox\nin the snow")
    assert Message.objects.filter(text__startswith="/image").count() == 0, "not sent yet"

    page.keyboard.press("Enter")
    card = page.locator(CARDS).first
    expect(card).to_be_in_viewport()
    expect(box).to_have_value("")
    assert Message.objects.filter(text="/image a fox\nin the snow").count() == 1

    # Reading older messages: the picture finishing does not pull the page down.
    page.evaluate("window.scrollTo(0, 0)")
    expect(card).to_have_attribute("data-status", "complete", timeout=30_000)
    page.wait_for_timeout(300)
    assert page.evaluate(SCROLL_Y) == 0

    # At the bottom: the next card's updates keep the page there.
    box.fill("/image a second fox")
    box.press("Enter")
    second = page.locator(CARDS).nth(1)
    expect(second).to_be_in_viewport()
    page.wait_for_function(AT_BOTTOM)
    expect(second).to_have_attribute("data-status", "complete", timeout=30_000)
    page.wait_for_timeout(300)
    assert page.evaluate(AT_BOTTOM), "the grown card is still fully in view"
