"""`manage.py check --deploy` about the site's address (MAMI_URL): what
follows from it, said once and in plain words."""

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def site_address(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    site = settings.SITE
    if not site.https:
        return [
            Warning(
                f"MAMI_URL is {settings.MAMI_URL}: mami is served over plain HTTP, so its "
                "cookies are not HTTPS-only, no HSTS is sent and nothing is redirected to "
                "HTTPS. That is right on a network you trust (a home or office LAN); "
                "anything a stranger can reach needs TLS in front.",
                hint="Put a TLS proxy (nginx, Caddy) in front, then set "
                "MAMI_URL=https://<your name> and MAMI_TRUSTED_PROXIES=1 (docs/deploy.md).",
                id="mami.W002",
            )
        ]
    if settings.SECURE_SSL_REDIRECT and settings.SECURE_PROXY_SSL_HEADER is None:
        return [
            Warning(
                f"MAMI_URL is {settings.MAMI_URL} but MAMI_TRUSTED_PROXIES is 0: mami "
                "cannot tell which requests arrived over HTTPS at your proxy, and would "
                "redirect every request to HTTPS again.",
                hint="Set MAMI_TRUSTED_PROXIES to the number of proxies in front of Daphne "
                "(usually 1); X-Forwarded-Proto is then believed from them only.",
                id="mami.W003",
            )
        ]
    return []
