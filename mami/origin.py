"""Websocket handshakes only from mami's own pages.

Channels' AllowedHostsOriginValidator compares the Origin's host with
ALLOWED_HOSTS only; a page on another port or scheme of an allowed host
would pass. Here the Origin must be the very origin of the request: its
host one of ALLOWED_HOSTS, and its scheme, host and port those the browser
used to reach mami (the Host header, and https when the connection or the
proxy's X-Forwarded-Proto says it is secure).
"""

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(scope: dict[str, Any]) -> bool:
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host:
        return False
    parsed = urlsplit(origin)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        return False
    try:
        origin_port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        return False
    secure = scope.get("scheme") == "wss" or headers.get("x-forwarded-proto") == "https"
    if parsed.scheme != ("https" if secure else "http"):
        return False
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    host_port = int(port) if port else DEFAULT_PORTS[parsed.scheme]
    return parsed.hostname.lower() == domain.lower() and origin_port == host_port


class SameOriginValidator:
    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
