"""The chat model answers in the page: a reply grows word by word, and a
Turkish request is drawn from the English prompt the model wrote."""

import pytest
from playwright.sync_api import Page, expect

from imagejobs.models import ImageJob
from tests.e2e.browsing import log_in
from tests.e2e.test_card_actions import CARDS
from tests.helpers import PASSWORD, make_conversation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LAST_REPLY = ".message--assistant >> nth=-1"
# Every text the newest reply showed, as the pushes swapped it in.
SEEN = """() => {
  window.mamiSeen = [];
  new MutationObserver(() => {
    const texts = document.querySelectorAll(
      ".message--assistant .message__text:not(.message__text--waiting)");
    const text = texts.length ? texts[texts.length - 1].innerText : "";
    if (text && text !== window.mamiSeen[window.mamiSeen.length - 1]) window.mamiSeen.push(text);
  }).observe(document.getElementById("messages"), { childList: true, subtree: true });
}"""


def _send(page: Page, text: str) -> None:
    box = page.locator(".composer textarea")
    box.fill(text)
    box.press("Enter")


def test_a_reply_streams_in_and_a_turkish_request_is_drawn_in_english(
    page: Page, live_server_url, django_user_model, screenshots
):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = make_conversation(bob)
    log_in(page, live_server_url, f"/conversations/{conversation.id}/")

    page.evaluate(SEEN)
    _send(page, "hello there")
    reply = page.locator(LAST_REPLY)
    expect(reply.get_by_role("button", name="Stop")).to_be_visible()
    expect(reply.locator(".message__text")).to_contain_text("Happy to help.")
    page.screenshot(path=screenshots / "reply-writing.png")
    expect(reply).to_have_attribute("data-reply", "done", timeout=15_000)
    final = reply.locator(".message__text").inner_text()
    assert "You wrote: “hello there”" in final
    seen = page.evaluate("window.mamiSeen")
    assert len(seen) > 5, "word by word, not all at once"
    assert all(final.startswith(text) for text in seen), "in order, each a beginning of the last"
    expect(reply.get_by_role("button", name="Stop")).to_have_count(0)

    page.select_option("#language-select", "tr")
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    said = "bana gün batımında bir deniz feneri çizer misin?"
    _send(page, said)
    card = page.locator(CARDS).first
    expect(card).to_contain_text("a lighthouse at sunset", timeout=15_000)
    expect(card).to_contain_text(f"Sizin sözleriniz: “{said}”")
    expect(card).to_have_attribute("data-status", "complete", timeout=30_000)
    page.screenshot(path=screenshots / "reply-drew.png")
    job = ImageJob.objects.get()
    assert (job.prompt, job.asked_as) == ("a lighthouse at sunset", said)
