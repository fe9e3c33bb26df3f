import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Create the demo login if there is none, and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--login-file",
            default=str(Path(settings.BASE_DIR) / ".demo-login"),
            help="Where the generated password is kept, so it can be printed again.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        login_file = Path(options["login_file"])
        users = get_user_model()
        user = users.objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            password = secrets.token_urlsafe(9)
            users.objects.create_superuser(DEMO_USERNAME, email="", password=password)
            login_file.write_text(f"{DEMO_USERNAME}\n{password}\n")
            login_file.chmod(0o600)
        elif login_file.exists():
            password = login_file.read_text().split("\n")[1]
        else:
            self.stdout.write(
                f"Login: {DEMO_USERNAME} (its password was set elsewhere; "
                "`python manage.py changepassword demo` sets a new one)"
            )
            return
        self.stdout.write(f"Login: {DEMO_USERNAME} / {password}")
