"""A media storage on a slow disk, for worker processes in tests: saving a
picture takes MAMI_TEST_SAVE_SECONDS."""

import os
import time

from django.core.files.storage import FileSystemStorage


class SlowStorage(FileSystemStorage):
    def _save(self, name, content):  # type: ignore[no-untyped-def]
        time.sleep(float(os.environ.get("MAMI_TEST_SAVE_SECONDS", "30")))
        return super()._save(name, content)
