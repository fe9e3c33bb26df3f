"""Cancel, Retry, Regenerate and the language switch, clicked in Chromium."""

import re

import pytest
from playwright.sync_api import Page, expect

from imagejobs.models import ImageJob, Status
from tests.helpers import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CARDS = "#messages .job-card"


def _log_in_and_ask(page: Page, base_url: str, text: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", "bob")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    box = page.locator(".composer textarea")
    box.fill(text)
    box.press("Enter")
    page.wait_for_url(re.compile(r".*/conversations/[0-9a-f-]+/$"))


def test_cancel_retry_and_regenerate_from_the_cards(page: Page, live_server_url, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    _log_in_and_ask(page, live_server_url, "/image an owl at night")
    box = page.locator(".composer textarea")
    box.fill("/image a second owl")
    box.press("Enter")
    owl, second = page.locator(CARDS).nth(0), page.locator(CARDS).nth(1)
    expect(second.locator(".job-card__position")).to_have_text("#1 in line")

    second.get_by_role("button", name="Cancel").click()
    expect(second).to_have_attribute("data-status", "canceled")
    expect(second).to_contain_text("Canceled")

    second.get_by_role("button", name="Retry").click()
    retry = page.locator(CARDS).nth(2)
    expect(retry).to_contain_text("a second owl")
    expect(retry).to_have_attribute("data-status", re.compile("queued|processing"))

    expect(owl).to_have_attribute("data-status", "complete", timeout=30_000)
    owl.get_by_role("button", name="Regenerate").click()
    again = page.locator(CARDS).nth(3)
    expect(again).to_contain_text("an owl at night")
    for card in (retry, again):
        expect(card).to_have_attribute("data-status", "complete", timeout=30_000)
    jobs = {job.prompt: job for job in ImageJob.objects.filter(retry_of__isnull=False)}
    assert jobs["a second owl"].retry_of.status == Status.CANCELED
    assert jobs["an owl at night"].seed == -1


def test_cancel_while_drawing_and_the_turkish_switch(
    page: Page, live_server_url, django_user_model
):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    _log_in_and_ask(page, live_server_url, "/image a very patient owl")
    card = page.locator(CARDS).first
    expect(card).to_have_attribute("data-status", "processing", timeout=15_000)
    card.get_by_role("button", name="Cancel").click()
    expect(card).to_have_attribute("data-status", "canceled", timeout=10_000)

    page.select_option("#language-select", "tr")
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    expect(page.locator(CARDS).first).to_contain_text("İptal edildi")
    expect(page.locator(CARDS).first.get_by_role("button", name="Tekrar dene")).to_be_visible()
    box = page.locator(".composer textarea")
    box.fill("bir kedi resmi çiz")
    box.press("Enter")
    cat = page.locator(CARDS).nth(1)
    expect(cat).to_contain_text("kedi")
    expect(cat).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(cat.get_by_role("button", name="Yeniden üret")).to_be_visible()
