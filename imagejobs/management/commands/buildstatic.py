from typing import Any

from django.core.management.base import BaseCommand

from mami.static_build import collect_if_changed


class Command(BaseCommand):
    help = (
        "Build the static files as served (hashed names, compressed copies) if their "
        "sources changed since the last build; `./scripts/run` and `./scripts/test` do."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if collect_if_changed():
            self.stderr.write("Built the static files.")
