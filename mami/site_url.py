"""MAMI_URL, where people reach mami, and what follows from it.

One address decides which Host headers are served, which origin forms may
be posted from, and whether the site is HTTPS-only (secure cookies, HSTS,
the redirect). An `http://` address is a trusted LAN or a laptop: nothing
there may demand HTTPS, or nobody could log in.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SiteUrl:
    scheme: str
    host: str
    port: int | None

    @property
    def https(self) -> bool:
        return self.scheme == "https"

    @property
    def origin(self) -> str:
        """The browser's Origin for pages of this site."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port is not None else "")

    @property
    def allowed_host(self) -> str:
        """The host as ALLOWED_HOSTS spells it (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_site_url(value: str) -> SiteUrl:
    """The address, or ValueError saying what is wrong with it."""
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("an http:// or https:// address such as http://192.168.1.20:8000")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError("the site's root address, without a path (mami is served at /)")
    if parts.username or parts.password:
        raise ValueError("an address without a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("an address with a valid port (1-65535)") from None
    default_port = 443 if parts.scheme == "https" else 80
    return SiteUrl(parts.scheme, parts.hostname, None if port == default_port else port)
