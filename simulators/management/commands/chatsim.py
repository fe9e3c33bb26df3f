from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from simulators.chat_model import ChatModelSimulator


class Command(BaseCommand):
    help = (
        "Run the chat-model simulator: a real HTTP server speaking the OpenAI-compatible "
        "/v1/chat/completions API (streaming, tool calls)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8089)
        parser.add_argument(
            "--tokens-per-second",
            type=float,
            default=20.0,
            help="How fast the reply's words come (default 20).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sim = ChatModelSimulator(
            tokens_per_second=options["tokens_per_second"],
            host=options["host"],
            port=options["port"],
        ).start()
        self.stdout.write(f"Chat-model simulator on {sim.url}", ending="\n")
        self.stdout.flush()
        sim.serve_until_stopped()
