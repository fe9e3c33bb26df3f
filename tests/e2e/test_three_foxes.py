"""A user asks for three foxes and watches them come through the queue,
in Debian's Chromium against a real Daphne server."""

import re

import pytest
from playwright.sync_api import Page, expect

from imagejobs.models import ImageJob, Status
from tests.helpers import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CARDS = "#messages .job-card"


def _log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("What should I draw?")


def _send(page: Page, text: str) -> None:
    box = page.locator(".composer textarea")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def _card_states(page: Page) -> list[tuple[str, int]]:
    return page.eval_on_selector_all(
        CARDS, "cards => cards.map(c => [c.dataset.status, Number(c.dataset.version)])"
    )


def test_three_foxes_queue_up_draw_one_by_one_and_survive_a_reload(
    page: Page, live_server_url: str, django_user_model, screenshots
):
    django_user_model.objects.create_user("alice", password=PASSWORD)
    _log_in(page, live_server_url, "alice")

    # Something already on the GPU, so the foxes really wait in line.
    page.locator(".composer textarea").fill("/image a warm-up owl")
    page.locator(".composer textarea").press("Enter")
    page.wait_for_url(re.compile(r".*/conversations/[0-9a-f-]+/$"))
    owl = page.locator(CARDS).first
    expect(owl).to_have_attribute("data-status", "processing", timeout=15_000)

    for _ in range(3):
        _send(page, "/image a red fox")
    foxes = [page.locator(CARDS).nth(n) for n in (1, 2, 3)]
    for place, fox in enumerate(foxes, start=1):
        expect(fox.locator(".job-card__position")).to_have_text(f"#{place} in line")
        expect(fox).to_contain_text("a red fox")
    page.screenshot(path=screenshots / "1-three-foxes-queued.png", full_page=True)

    # The bar moves: the first fox shows growing percentages while it draws.
    expect(foxes[0]).to_have_attribute("data-status", "processing", timeout=20_000)
    expect(foxes[1].locator(".job-card__position")).to_have_text("#1 in line")
    expect(foxes[2].locator(".job-card__position")).to_have_text("#2 in line")
    seen = set()
    for _ in range(40):
        text = foxes[0].inner_text()
        match = re.search(r"(\d+)%", text)
        if match:
            seen.add(int(match[1]))
        if len(seen) >= 3 or foxes[0].get_attribute("data-status") != "processing":
            break
        page.wait_for_timeout(150)
    assert len(seen) >= 3, f"progress seen: {sorted(seen)}"
    page.screenshot(path=screenshots / "2-first-fox-drawing.png", full_page=True)

    # One after another: never two cards processing at once.
    for _ in range(10):
        statuses = [status for status, _version in _card_states(page)]
        assert statuses.count("processing") <= 1
        page.wait_for_timeout(100)

    # Reload mid-way: every card is as the database has it.
    before = dict(
        zip(
            page.eval_on_selector_all(CARDS, "cs => cs.map(c => c.id)"),
            _card_states(page),
            strict=True,
        )
    )
    page.reload()
    after = dict(
        zip(
            page.eval_on_selector_all(CARDS, "cs => cs.map(c => c.id)"),
            _card_states(page),
            strict=True,
        )
    )
    assert list(after) == list(before)
    database = {f"job-{job.id}": (job.status, job.version) for job in ImageJob.objects.all()}
    for card_id, (status, version) in after.items():
        db_status, db_version = database[card_id]
        assert version <= db_version
        assert version >= before[card_id][1]
        if version == db_version:
            assert status == db_status

    # Live updates go on after the reload: all three foxes end as pictures.
    for fox in [page.locator(CARDS).nth(n) for n in (1, 2, 3)]:
        expect(fox).to_have_attribute("data-status", "complete", timeout=30_000)
        expect(fox.locator("img.job-card__image")).to_be_visible()
    images = page.eval_on_selector_all(
        "img.job-card__image", "imgs => imgs.map(i => i.complete && i.naturalWidth)"
    )
    assert images == [512, 512, 512, 512]
    assert ImageJob.objects.filter(status=Status.COMPLETE).count() == 4
    page.screenshot(path=screenshots / "3-three-foxes-done.png", full_page=True)

    # The lightbox opens on click and Esc closes it.
    page.locator(CARDS).nth(1).locator(".job-card__image-button").click()
    expect(page.locator("#lightbox")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_be_hidden()
