import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = (
        "Create the demo login on a site that has no accounts yet, and print it "
        "(again on later runs while its password file is kept). A plain user unless "
        "--superuser."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--login-file",
            default=str(Path(settings.DATA_DIR) / "demo-login"),
            help="Where the generated password is kept, so it can be printed again.",
        )
        parser.add_argument(
            "--superuser",
            action="store_true",
            help="Make the demo login a superuser (it can then open the admin).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        login_file = Path(options["login_file"])
        users = get_user_model()
        user = users.objects.filter(username=DEMO_USERNAME).first()
        if user is None and users.objects.exists():
            # A site with real accounts never gets a login it did not ask for.
            self.stdout.write(
                "Log in with your account (`python manage.py createsuperuser` makes one)."
            )
            return
        if user is not None and options["superuser"] and not user.is_superuser:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        if user is None:
            password = secrets.token_urlsafe(9)
            create = (
                users.objects.create_superuser
                if options["superuser"]
                else users.objects.create_user
            )
            create(DEMO_USERNAME, email="", password=password)
            login_file.parent.mkdir(parents=True, exist_ok=True)
            # Private from the first byte, not after.
            login_file.unlink(missing_ok=True)
            with os.fdopen(os.open(login_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
                file.write(f"{DEMO_USERNAME}\n{password}\n")
        elif login_file.exists():
            password = login_file.read_text().split("\n")[1]
        else:
            self.stdout.write(
                f"Login: {DEMO_USERNAME} (its password was set elsewhere; "
                "`python manage.py changepassword demo` sets a new one)"
            )
            return
        self.stdout.write(f"Login: {DEMO_USERNAME} / {password}")
        if not users.objects.get(username=DEMO_USERNAME).is_staff:
            self.stdout.write(
                "  (a plain user: `MAMI_DEMO_SUPERUSER=1 ./scripts/run` makes it an admin)"
            )
