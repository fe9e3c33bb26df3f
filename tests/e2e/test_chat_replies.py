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


# The newest reply's Stop button, remembered as an element.
REMEMBER_STOP = """() => {
  const replies = document.querySelectorAll(".message--assistant");
  const reply = replies[replies.length - 1];
  window.mamiStop = reply.querySelector(".message__actions button");
  window.mamiLength = reply.querySelector(".message__text").innerText.length;
}"""
GREW = """() => {
  const texts = document.querySelectorAll(".message--assistant .message__text");
  return texts[texts.length - 1].innerText.length > window.mamiLength + 20;
}"""


def test_stop_stays_one_button_while_the_reply_grows_and_a_click_stops_it(
    page: Page, live_server_url, django_user_model
):
    carol = django_user_model.objects.create_user("carol", password=PASSWORD)
    conversation = make_conversation(carol)
    log_in(page, live_server_url, f"/conversations/{conversation.id}/", "carol")
    # A long message: the simulator quotes it, so the reply takes seconds.
    _send(page, " ".join(["tell me about lighthouses, harbours and the sea"] * 4))
    reply = page.locator(LAST_REPLY)
    expect(reply.locator(".message__text:not(.message__text--waiting)")).to_be_visible()
    page.evaluate(REMEMBER_STOP)
    page.wait_for_function(GREW)
    # Pushes replaced the text, not the button: a press and a release
    # straddling a push still make a click, and focus stays on it.
    assert page.evaluate("window.mamiStop.isConnected")
    page.evaluate("window.mamiStop.focus()")
    page.keyboard.press("Enter")
    expect(reply).to_have_attribute("data-reply", "stopped", timeout=5_000)
    expect(reply).to_contain_text("Stopped.")
    expect(reply.get_by_role("button", name="Retry")).to_be_visible()
    kept = reply.locator(".message__text").inner_text()
    page.reload()
    expect(page.locator(LAST_REPLY).locator(".message__text")).to_have_text(kept)
