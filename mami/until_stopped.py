"""For commands that serve until the process is told to stop."""

import signal
import threading


def wait_until_stopped() -> None:
    """Block until SIGTERM or SIGINT (Ctrl+C)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
