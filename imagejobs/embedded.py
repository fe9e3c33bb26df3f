"""The embedded topology: the worker (and, without FORGE_URL, the Forge
simulator) run inside the web server's process."""

import asyncio
import atexit
import logging
import socket
import threading

from django.conf import settings

from mami import push

from .worker import Worker

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_worker: Worker | None = None


def start(loop: asyncio.AbstractEventLoop) -> None:
    """Called once from the server's event loop, on its first connection."""
    global _worker
    push.set_server_loop(loop)
    if not settings.MAMI_EMBEDDED_WORKER:
        return
    with _lock:
        if _worker is not None:
            return
        forge_url = settings.FORGE_URL
        if not forge_url:
            # A development double: imported only when it is to run.
            from simulators.forge import ForgeSimulator

            simulator = ForgeSimulator(
                seconds_per_step=settings.MAMI_SIMULATOR_SECONDS_PER_STEP,
                switch_seconds=settings.MAMI_SIMULATOR_SWITCH_SECONDS,
            ).start()
            forge_url = simulator.url
            logger.info("FORGE_URL is not set: using the Forge simulator at %s", forge_url)
        # Stable across restarts, whatever port the simulator got: a
        # restarted server recovers its predecessor's job at once.
        _worker = Worker(forge_url, worker_id=f"{socket.gethostname()}/embedded", pipelined=True)
        thread = threading.Thread(target=_worker.run, name="mami-worker", daemon=True)
        thread.start()
        atexit.register(_stop, _worker, thread)


def _stop(worker: Worker, thread: threading.Thread) -> None:
    """The server is stopping (Ctrl+C, SIGTERM): the picture being drawn
    goes back to the head of the queue now, not when the next start
    notices it was left behind."""
    worker.stop.set()
    thread.join(timeout=20)
    if thread.is_alive():
        logger.warning("the worker did not stop in time; its job is recovered on the next start")
