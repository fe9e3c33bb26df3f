"""The address a request came from, as the trusted proxies saw it: the one
django-axes holds logins by (and anything else that needs a client).

Behind MAMI_TRUSTED_PROXIES proxies, each appends the address it took the
request from to `X-Forwarded-For`, so only the last that many entries are
theirs; whatever stands left of them the client wrote, and may be forged.
Daphne's `--proxy-headers` takes the left-most entry (the client's own
word), so `REMOTE_ADDR` is not trusted once proxies are counted. With no
proxies (the default) it is the socket's peer address, and the header is
ignored.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    peer = request.META.get("REMOTE_ADDR") or None
    proxies = settings.MAMI_TRUSTED_PROXIES
    if proxies < 1:
        return peer
    forwarded = [
        entry.strip()
        for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if entry.strip()
    ]
    # Fewer entries than proxies: the request did not come through them all
    # (a probe from inside); the header says nothing trustworthy then.
    if len(forwarded) < proxies:
        return peer
    seen = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(seen))
    except ValueError:
        # A proxy writes an address; anything else is not from one.
        return peer
