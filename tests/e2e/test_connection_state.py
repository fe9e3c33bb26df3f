"""The page says when it is offline, and is exact again once back."""

import re

import pytest
from playwright.sync_api import Page, expect

from imagejobs.models import ImageJob
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation, request_picture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_server_going_away_is_shown_and_the_cards_are_exact_after_it_returns(
    page: Page, mami_server, django_user_model, screenshots
):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    job = request_picture(conversation, "a lighthouse in a storm", steps=40)
    log_in(page, mami_server.url, f"/conversations/{conversation.id}/")
    card = page.locator(CARDS).first
    expect(card).to_have_attribute("data-status", "processing", timeout=20_000)
    banner = page.locator("#connection-state")
    expect(banner).to_be_hidden()

    mami_server.stop()
    expect(banner).to_be_visible(timeout=1_000)
    expect(banner).to_contain_text("Reconnecting")
    expect(page.locator("#conversation-live")).to_have_class(re.compile("is-stale"))
    page.screenshot(path=screenshots / "offline.png")

    # Sending meanwhile fails in the open: the text stays in the box.
    box = page.locator(".composer textarea")
    box.fill("/image a second lighthouse")
    box.press("Enter")
    expect(page.locator("#composer-errors")).to_contain_text("could not be sent")
    expect(box).to_have_value("/image a second lighthouse")

    mami_server.start()
    expect(banner).to_be_hidden(timeout=15_000)
    expect(page.locator("#conversation-live")).not_to_have_class(re.compile("is-stale"))
    # The picture lost with the server is drawn again and arrives.
    expect(card).to_have_attribute("data-status", "complete", timeout=40_000)
    job.refresh_from_db()
    expect(card).to_have_attribute("data-version", str(job.version))

    box.press("Enter")
    expect(page.locator(CARDS)).to_have_count(2)
    expect(box).to_have_value("")
    assert ImageJob.objects.filter(prompt="a second lighthouse").count() == 1
