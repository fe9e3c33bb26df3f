"""The simulators' commands (`forgesim`, `chatsim`): where to listen, the
simulator's own speed knobs, and serving until the process is told to stop."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from .server import SimServer


@dataclass(frozen=True)
class Knob:
    option: str  # e.g. "--seconds-per-step"
    default: float
    help: str


def simulator_command(
    label: str,
    description: str,
    default_port: int,
    knobs: tuple[Knob, ...],
    make: Callable[[str, int, dict[str, Any]], SimServer],
) -> type[BaseCommand]:
    """A management command serving the simulator `make(host, port,
    options)` returns, with `knobs` as float options."""

    class Command(BaseCommand):
        help = description

        def add_arguments(self, parser: CommandParser) -> None:
            parser.add_argument("--host", default="127.0.0.1")
            parser.add_argument("--port", type=int, default=default_port)
            for knob in knobs:
                text = f"{knob.help} (default {knob.default:g})."
                parser.add_argument(knob.option, type=float, default=knob.default, help=text)

        def handle(self, *args: Any, **options: Any) -> None:
            sim = make(options["host"], options["port"], options).start()
            self.stdout.write(f"{label} on {sim.url}", ending="\n")
            self.stdout.flush()
            sim.serve_until_stopped()

    return Command
