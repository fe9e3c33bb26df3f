import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError

from imagejobs.models import ImageJob, Status
from tests.conftest import make_conversation, request_picture


def test_our_runworker_wins_over_channels_command_of_the_same_name():
    assert get_commands()["runworker"] == "imagejobs"


def test_without_a_forge_url_it_says_how_to_get_one(settings):
    settings.FORGE_URL = ""
    with pytest.raises(CommandError, match="FORGE_URL"):
        call_command("runworker", "--forge-url", "")


@pytest.mark.django_db(transaction=True)
def test_drain_processes_the_queue_and_exits(alice, forge):
    conversation = make_conversation(alice)
    for n in range(2):
        request_picture(conversation, f"fox {n}", steps=4)
    call_command("runworker", "--forge-url", forge.url, "--drain", "--worker-id", "gpu-cli")
    assert list(ImageJob.objects.values_list("status", "worker_id")) == [
        (Status.COMPLETE, "gpu-cli"),
        (Status.COMPLETE, "gpu-cli"),
    ]
