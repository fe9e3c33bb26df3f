"""Static files built for serving: hashed names (so they can be cached for
a year), compressed copies, one manifest. Built again only when the source
files changed, so starting the server stays quick."""

import fcntl
import hashlib
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import call_command

STAMP = ".sources"


def sources_fingerprint() -> str:
    """Every file collectstatic would copy: its name, size and change time."""
    digest = hashlib.sha256()
    seen: set[str] = set()
    for finder in get_finders():
        for path, storage in finder.list(["CVS", ".*", "*~"]):
            if path in seen:
                continue
            seen.add(path)
            stat = Path(storage.path(path)).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def collect_if_changed() -> bool:
    """Runs collectstatic unless STATIC_ROOT already holds these sources;
    True when it ran. Processes starting at once wait for each other."""
    root = Path(settings.STATIC_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fingerprint = sources_fingerprint()
        stamp = root / STAMP
        built = (root / "staticfiles.json").exists() and stamp.exists()
        if built and stamp.read_text() == fingerprint:
            return False
        call_command("collectstatic", interactive=False, clear=True, verbosity=0)
        stamp.write_text(fingerprint)
        return True
