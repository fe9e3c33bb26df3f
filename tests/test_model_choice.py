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
