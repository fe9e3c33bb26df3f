"""The SECRET_KEY of an install that set none: made once, kept in the data
directory, readable by its owner only. Sessions, password-reset links and
signed picture links survive restarts because it does."""

import contextlib
import os
import secrets
import time
from pathlib import Path


def kept_secret(path: Path) -> str:
    """The secret in `path`, made there first if there is none. Processes
    starting at once (the server, a worker, a management command) agree on
    one: it is written to a private file and linked into place, which only
    one of them can do."""
    for _ in range(50):
        try:
            found = path.read_text().strip()
        except FileNotFoundError:
            found = ""
        if found:
            return found
        if not path.exists():
            _make(path)
        else:
            # Another process linked it a moment ago and may still be
            # writing; a linked file is complete, so this is brief.
            time.sleep(0.01)
    raise OSError(f"{path} exists but stays empty; remove it to make a new secret")


def _make(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        # Another process linked its own first: that one is the secret.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
