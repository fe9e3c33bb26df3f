from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from simulators.forge import ForgeSimulator


class Command(BaseCommand):
    help = "Run the Forge simulator: a real HTTP server speaking Forge's /sdapi/v1 API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=7860)
        parser.add_argument(
            "--seconds-per-step",
            type=float,
            default=0.1,
            help="How long one sampling step takes (default 0.1).",
        )
        parser.add_argument(
            "--switch-seconds",
            type=float,
            default=0.0,
            help="How long loading another checkpoint takes (default 0).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sim = ForgeSimulator(
            options["host"],
            options["port"],
            seconds_per_step=options["seconds_per_step"],
            switch_seconds=options["switch_seconds"],
        ).start()
        self.stdout.write(f"Forge simulator on {sim.url}", ending="\n")
        self.stdout.flush()
        sim.serve_until_stopped()
