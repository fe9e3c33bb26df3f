"""A finished picture's actions, clicked in Chromium: download, copy the
prompt, same seed, variations, and the lightbox's arrow keys."""

import pytest
from playwright.sync_api import Page, expect

from imagejobs.models import ImageJob
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation, request_picture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_download_same_seed_variations_and_the_lightbox(
    page: Page, live_server_url, django_user_model, screenshots, context
):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server_url)
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    job = request_picture(conversation, "A red fox in the snow", steps=6)
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")
    card = page.locator(CARDS).first
    expect(card).to_have_attribute("data-status", "complete", timeout=30_000)
    job.refresh_from_db()
    expect(card).to_contain_text(f"512 × 512 · 6 steps · Seed {job.result_seed}")
    page.screenshot(path=screenshots / "finished-card.png")

    with page.expect_download() as download:
        card.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename == "a-red-fox-in-the-snow.png"
    shown = page.request.get(f"{live_server_url}/jobs/{job.id}/image/").body()
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == shown, "the original, as the card shows it"

    card.get_by_role("button", name="Copy prompt").click()
    expect(page.locator("#notices")).to_contain_text("Prompt copied")
    assert page.evaluate("navigator.clipboard.readText()") == "A red fox in the snow"

    card.get_by_role("button", name="Same seed").click()
    expect(page.locator(CARDS)).to_have_count(2)
    card.get_by_label("How many variations").select_option("3")
    card.get_by_role("button", name="Variations").click()
    expect(page.locator(CARDS)).to_have_count(5)
    again = ImageJob.objects.exclude(pk=job.pk).order_by("created_at")
    assert [j.seed for j in again] == [job.result_seed, -1, -1, -1]
    for n in range(5):
        expect(page.locator(CARDS).nth(n)).to_have_attribute(
            "data-status", "complete", timeout=60_000
        )

    # The lightbox walks the conversation's pictures with the arrow keys.
    pictures = page.locator(f"{CARDS} [data-lightbox]")
    pictures.nth(1).click()
    lightbox = page.locator("#lightbox .lightbox__image")
    expect(lightbox).to_have_attribute("src", pictures.nth(1).get_attribute("data-lightbox"))
    page.keyboard.press("ArrowRight")
    expect(lightbox).to_have_attribute("src", pictures.nth(2).get_attribute("data-lightbox"))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(lightbox).to_have_attribute("src", pictures.nth(0).get_attribute("data-lightbox"))
    page.keyboard.press("ArrowLeft")  # the first stays
    expect(lightbox).to_have_attribute("src", pictures.nth(0).get_attribute("data-lightbox"))
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).not_to_be_visible()
