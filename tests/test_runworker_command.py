import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError


def test_our_runworker_wins_over_channels_command_of_the_same_name():
    assert get_commands()["runworker"] == "imagejobs"


def test_without_a_forge_url_it_says_how_to_get_one(settings):
    settings.FORGE_URL = ""
    with pytest.raises(CommandError, match="FORGE_URL"):
        call_command("runworker", "--forge-url", "")
