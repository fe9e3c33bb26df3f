from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from mami.static_build import collect_if_changed


class Command(BaseCommand):
    help = (
        "Make the site ready to serve: apply migrations, build the static files if they "
        "changed, and (on a site with no accounts yet) create the demo login and print it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--demo-superuser",
            action="store_true",
            help="Make the demo login a superuser (it can then open the admin).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        # With DEBUG on, WhiteNoise serves the source files themselves.
        if not settings.DEBUG and collect_if_changed():
            self.stderr.write("Built the static files.")
        demo = ["--superuser"] if options["demo_superuser"] else []
        call_command("ensure_demo_user", *demo, stdout=self.stdout)
