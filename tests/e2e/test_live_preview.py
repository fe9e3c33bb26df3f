"""The live preview, as a user watches a picture being drawn in Chromium."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation, request_picture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _shown(page: Page) -> str:
    """The key of the preview on screen, once its image has loaded."""
    preview = page.locator(f"{CARDS} .job-card__preview")
    expect(preview).to_be_visible(timeout=20_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('.job-card__preview');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    return preview.get_attribute("data-preview")


def test_the_preview_sharpens_during_the_draw_and_survives_a_reload(
    page: Page, live_server_url, django_user_model, screenshots
):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    # 80 steps: about 12 s on the server's simulator, time to reload mid-draw.
    request_picture(conversation, "a lighthouse at dusk", steps=80)
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")
    card = page.locator(CARDS).first
    expect(card).to_have_attribute("data-status", "processing", timeout=20_000)
    first = _shown(page)
    page.wait_for_function(
        "(first) => { const i = document.querySelector('.job-card__preview');"
        " return i && i.dataset.preview !== first; }",
        arg=first,
    )
    page.screenshot(path=screenshots / "live-preview.png")

    page.reload()
    # Opened mid-draw: the latest preview at once, not a placeholder.
    expect(card).to_have_attribute("data-status", "processing")
    assert _shown(page)
    expect(card.locator(".job-card__canvas--shimmer")).to_have_count(0)
    expect(card).to_have_attribute("data-status", "complete", timeout=40_000)
    expect(card.locator(".job-card__preview")).to_have_count(0)
    expect(card.locator("img.job-card__image")).to_be_visible()
    assert re.search(
        r"/jobs/[0-9a-f-]+/image/", card.locator("img.job-card__image").get_attribute("src")
    )
