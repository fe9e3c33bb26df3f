"""Every page works under the Content-Security-Policy (the autouse fixture
fails on any violation Chromium reports), and long words never widen the
page on a phone."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_every_page_loads_and_works_under_the_policy(
    page: Page, live_server_url, django_user_model
):
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    response = page.goto(f"{live_server_url}/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-eval" not in policy
    assert "camera=()" in response.headers["permissions-policy"]
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    box = page.locator(".composer textarea")
    box.fill("/image a fox under a strict policy")
    box.press("Enter")
    page.wait_for_url(re.compile(r".*/conversations/[0-9a-f-]+/$"))
    # htmx and the socket work: a second message arrives without a reload
    # and the box empties (code that used to sit in an inline attribute).
    box.fill("/image a second fox")
    box.press("Enter")
    expect(page.locator("#messages .job-card")).to_have_count(2)
    expect(box).to_have_value("")
    expect(page.locator(".job-card--complete").first).to_be_visible(timeout=60_000)
    # The language menu submits on change (no inline onchange).
    page.select_option("#language-select", "tr")
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    page.select_option("#language-select", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    for path in (
        "/conversations/",
        "/admin/",
        "/admin/imagejobs/imagejob/",
        "/admin/imagejobs/imagejob/queue/",
        "/api/docs",
    ):
        assert page.goto(f"{live_server_url}{path}").status == 200, path
    expect(page.locator(".swagger-ui")).to_be_visible()


def test_a_long_unbroken_word_wraps_on_a_phone(page: Page, live_server_url, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server_url}/accounts/login/")
    page.fill("#id_username", "bob")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    box = page.locator(".composer textarea")
    box.fill("x" * 3000)
    box.press("Enter")
    page.wait_for_url(re.compile(r".*/conversations/[0-9a-f-]+/$"))
    expect(page.locator(".message__text").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide"
    # A message of invisible characters gets a form error; the page stays.
    box.fill("\u200b\u200b")
    box.press("Enter")
    expect(page.locator("#composer-errors")).to_contain_text("Write a message first.")
    expect(page.locator(".message__text").first).to_be_visible()
    expect(box).to_have_value("\u200b\u200b")
