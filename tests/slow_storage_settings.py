"""mami's settings with pictures saved to a slow disk (tests/slow_storage.py)."""

from mami.settings import *  # noqa: F403
from mami.settings import STORAGES

STORAGES = {**STORAGES, "default": {"BACKEND": "tests.slow_storage.SlowStorage"}}
