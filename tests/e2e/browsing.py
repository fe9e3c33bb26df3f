"""What many browser tests do first."""

from playwright.sync_api import Page

from tests.helpers import PASSWORD


def log_in(page: Page, base_url: str, next_path: str, username: str = "bob") -> None:
    """Log in through the form and land on `next_path`."""
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
