import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagejobs.checks import uses_in_memory_layer
from imagejobs.worker import Worker
from imagejobs.workers import WorkerIdInUse


class Command(BaseCommand):
    help = "Process the image queue serially against one Forge server (one per GPU)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--forge-url",
            default=settings.FORGE_URL,
            help="Base URL of Forge (default: the FORGE_URL setting).",
        )
        parser.add_argument("--worker-id", default=None, help="Stable id shown to staff.")
        parser.add_argument(
            "--drain",
            action="store_true",
            help="Exit once the queue is empty instead of waiting for work.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["forge_url"]:
            raise CommandError(
                "No Forge server: set FORGE_URL or pass --forge-url "
                "(for a stand-in, run `python manage.py forgesim --port 7860` and use "
                "http://127.0.0.1:7860)."
            )
        if uses_in_memory_layer():
            self.stderr.write(
                "Warning: the in-memory channel layer can't carry live updates out of this "
                "process; set REDIS_URL so browsers see this worker's progress."
            )
        stop = threading.Event()
        worker = Worker(
            options["forge_url"], worker_id=options["worker_id"], stop=stop, pipelined=True
        )

        def request_stop(signum: int, frame: object) -> None:
            self.stderr.write(f"Signal {signum}: finishing the current job, then stopping.")
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write(f"Worker {worker.worker_id} on {options['forge_url']}")
        try:
            worker.run(until_idle=options["drain"])
        except WorkerIdInUse as exc:
            raise CommandError(str(exc)) from None
