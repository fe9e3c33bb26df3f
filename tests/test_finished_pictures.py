"""What a finished picture offers: its details, a download named after the
prompt, the same seed again, and variations counted against the limits."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message
from imagejobs import positions
from imagejobs.cards import render_card
from imagejobs.models import ImageJob, Status
from imagejobs.worker import Worker
from tests.helpers import HTMX, make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished(alice, forge) -> ImageJob:
    job = request_picture(make_conversation(alice), "A lighthouse at dusk!", steps=4, width=512)
    Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    return job


def test_the_card_shows_size_steps_and_seed_and_offers_the_actions(finished):
    card = render_card(finished, positions.snapshot())
    assert f"512 × 512 · 4 steps · Seed {finished.result_seed}" in card
    for action in ("Download", "Copy prompt", "Same seed", "Variations", "Regenerate"):
        assert action in card


def test_download_is_the_original_named_after_the_prompt(client, alice, bob, finished):
    client.force_login(alice)
    answer = client.get(f"/jobs/{finished.id}/image/?download=1")
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="a-lighthouse-at-dusk.png"'
    body = b"".join(answer.streaming_content)
    assert body == finished.image.open("rb").read()
    assert body.startswith(b"\x89PNG")
    client.force_login(bob)
    assert client.get(f"/jobs/{finished.id}/image/?download=1").status_code == 404


def test_same_seed_queues_the_request_again_with_its_seed_fixed(client, alice, finished):
    client.force_login(alice)
    answer = client.post(f"/conversations/jobs/{finished.id}/same-seed/", **HTMX)
    assert answer.status_code == 200
    again = ImageJob.objects.exclude(pk=finished.pk).get()
    assert again.seed == finished.result_seed
    assert again.prompt == finished.prompt
    assert (again.width, again.steps, again.status) == (512, 4, Status.QUEUED)
    assert again.retry_of_id == finished.id
    assert f'id="job-{again.id}"' in answer.content.decode()
    assert f"with seed {finished.result_seed}" in again.message.text


def test_variations_are_one_card_each_with_new_seeds(client, alice, finished):
    client.force_login(alice)
    answer = client.post(f"/conversations/jobs/{finished.id}/variations/", {"count": 3}, **HTMX)
    assert answer.status_code == 200
    made = list(ImageJob.objects.exclude(pk=finished.pk).order_by("created_at"))
    assert len(made) == 3
    assert all(job.seed == -1 and job.prompt == finished.prompt for job in made)
    html = answer.content.decode()
    assert [html.index(f'id="job-{job.id}"') for job in made] == sorted(
        html.index(f'id="job-{job.id}"') for job in made
    )
    texts = [job.message.text for job in made]
    assert texts[0].startswith("Variation 1 of 3")
    assert texts[2].startswith("Variation 3 of 3")


@pytest.mark.parametrize("count", ["0", "5", "many", ""])
def test_a_bad_number_of_variations_is_refused_and_changes_nothing(client, alice, finished, count):
    client.force_login(alice)
    messages = Message.objects.count()
    answer = client.post(f"/conversations/jobs/{finished.id}/variations/", {"count": count}, **HTMX)
    assert answer.status_code == 400
    assert "Ask for 1 to 4 variations." in answer.content.decode()
    assert ImageJob.objects.count() == 1
    assert Message.objects.count() == messages


def test_variations_that_would_pass_the_limit_are_refused_whole(client, alice, finished, settings):
    settings.MAMI_MAX_UNFINISHED_PER_USER = 2
    client.force_login(alice)
    answer = client.post(f"/conversations/jobs/{finished.id}/variations/", {"count": 3}, **HTMX)
    assert answer.status_code == 400
    assert "the most one person may have at once" in answer.content.decode()
    assert ImageJob.objects.count() == 1, "none of the three queued"
    answer = client.post(f"/conversations/jobs/{finished.id}/variations/", {"count": 2}, **HTMX)
    assert answer.status_code == 200
    assert ImageJob.objects.count() == 3


def test_only_a_finished_picture_has_same_seed_and_variations(client, alice):
    waiting = request_picture(make_conversation(alice), "a fox")
    client.force_login(alice)
    for path in ("same-seed", "variations"):
        answer = client.post(f"/conversations/jobs/{waiting.id}/{path}/", {"count": 1}, **HTMX)
        assert answer.status_code == 400
    assert ImageJob.objects.count() == 1


def test_more_variations_than_a_minute_allows_are_refused_with_a_reason(
    client, alice, finished, settings
):
    settings.MAMI_MAX_PICTURES_PER_MINUTE = 2
    # The finished picture was asked for long ago: the minute is empty.
    ImageJob.objects.filter(pk=finished.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    client.force_login(alice)
    answer = client.post(f"/conversations/jobs/{finished.id}/variations/", {"count": 3}, **HTMX)
    assert answer.status_code == 400
    assert "That would make more than 2 pictures within a minute" in answer.content.decode()
    assert ImageJob.objects.count() == 1
    answer = client.post(f"/conversations/jobs/{finished.id}/variations/", {"count": 2}, **HTMX)
    assert answer.status_code == 200
    assert ImageJob.objects.count() == 3
