"""A model picked in the composer draws the picture, and the card says so."""

import pytest
from playwright.sync_api import Page, expect

from imagejobs import checkpoints
from imagejobs.models import ImageJob
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_model_picked_in_the_composer_is_on_the_finished_card(
    page: Page, live_server_url, django_user_model, screenshots
):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    # The server's worker is back on record (each test empties the tables).
    wait_for(lambda: "mami-photo" in checkpoints.choosable())
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")
    picker = page.get_by_label("Model", exact=True)
    expect(picker).to_have_value("")  # automatic until one is chosen
    picker.select_option("mami-photo")
    box = page.locator(".composer textarea")
    box.fill("/image a lighthouse at dusk")
    box.press("Enter")
    card = page.locator(CARDS).first
    expect(card.locator(".job-card__model")).to_have_text("mami-photo")
    expect(card).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(card).to_contain_text("512 × 512 · 20 steps")
    expect(card.locator(".job-card__model")).to_have_text("mami-photo")
    expect(card.locator(".job-card__model")).to_have_attribute("title", "Model: chosen")
    page.screenshot(path=screenshots / "model-card.png")
    job = ImageJob.objects.get()
    assert job.result_info["sd_model_name"] == "mami-photo", "drawn with it, not just labelled"
    # The conversation remembers the choice.
    page.reload()
    expect(page.get_by_label("Model", exact=True)).to_have_value("mami-photo")
