"""A picture drawn with the checkpoint it asked for: Forge is told per
request (never through /options), and a picture Forge drew with another
model fails with a readable message."""

import pytest
from django.utils import translation

from chat.actions import check_regenerate
from imagejobs import queue
from imagejobs.cards import render_card
from imagejobs.errors import ErrorCode
from imagejobs.models import ImageJob, Status
from imagejobs.worker import Worker, txt2img_payload
from tests.helpers import make_conversation, request_picture, sim_control

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_worker_asks_forge_for_the_model_per_request(alice, forge):
    job = request_picture(make_conversation(alice), "a fox", steps=2, model="mami-photo")
    payload = txt2img_payload(job)
    assert payload["override_settings"]["sd_model_checkpoint"] == "mami-photo"
    assert payload["override_settings_restore_afterwards"] is False
    Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert job.result_info["sd_model_name"] == "mami-photo"
    stats = sim_control(forge)["stats"]
    assert stats["models_drawn"] == ["mami-photo"]
    assert stats["options_writes"] == 0, "never changes the model for everyone"
    assert "mami-photo" in render_card(job, queue.snapshot())
    # Regenerate keeps the model.
    again = check_regenerate(alice, job.id)
    assert ImageJob.objects.get(message=again).model == "mami-photo"


def test_no_model_asked_means_no_override(alice, forge):
    job = request_picture(make_conversation(alice), "a fox", steps=2)
    assert "sd_model_checkpoint" not in txt2img_payload(job).get("override_settings", {})


def test_a_picture_drawn_with_another_model_fails_readably(alice, forge):
    # Forge drops a checkpoint it does not know and draws with its own.
    job = request_picture(make_conversation(alice), "a fox", steps=2, model="retired-model")
    Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.ERROR
    assert job.error_code == ErrorCode.WRONG_MODEL
    assert "asked for model 'retired-model', Forge drew with 'mami-sim'" in job.error_detail
    assert not job.image
    assert "another model than the one asked for" in render_card(job, queue.snapshot())
    with translation.override("tr"):
        turkish = render_card(job, queue.snapshot())
    assert "istenenden başka bir modelle" in turkish


@pytest.fixture
def offering(forge):
    """A live worker whose Forge has the simulator's three checkpoints."""
    from imagejobs import registry

    worker = Worker(forge.url, worker_id="gpu-test")
    registry.register("gpu-test", forge.url)
    worker.read_checkpoints()
    return worker


HTMX = {"HTTP_HX_REQUEST": "true"}


def test_a_model_is_chosen_in_the_composer_or_with_the_command(client, alice, offering):
    conversation = make_conversation(alice)
    client.force_login(alice)
    page = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert '<option value="mami-photo">mami-photo</option>' in page
    url = f"/conversations/{conversation.id}/messages/"
    assert (
        client.post(url, {"text": "/image a fox", "model": "mami-photo"}, **HTMX).status_code == 200
    )
    assert client.post(url, {"text": "/image --model mami-anime an owl"}, **HTMX).status_code == 200
    models = dict(ImageJob.objects.values_list("prompt", "model"))
    assert models == {"a fox": "mami-photo", "an owl": "anime_mami-anime"}
    # No model named: the conversation's last choice.
    client.post(url, {"text": "draw a cat"}, **HTMX)
    assert ImageJob.objects.get(prompt="cat").model == "anime_mami-anime"
    page = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert '<option value="anime_mami-anime" selected>' in page


def test_an_unknown_model_is_refused_with_the_valid_names_and_nothing_is_written(
    client, alice, offering
):
    conversation = make_conversation(alice)
    client.force_login(alice)
    url = f"/conversations/{conversation.id}/messages/"
    for data in (
        {"text": "/image --model dreamshaper a fox"},
        {"text": "/image a fox", "model": "dreamshaper"},
    ):
        answer = client.post(url, data, **HTMX)
        assert answer.status_code == 400
        assert (
            "There is no model “dreamshaper”. Choose one of: anime_mami-anime, mami-photo, "
            "mami-sim." in answer.content.decode()
        )
    assert not ImageJob.objects.exists()
    assert not conversation.messages.exists()
