"""Forward proxies: which one an upstream URL goes through, from a proxy URL or from the
environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, each also lowercase), the way curl
reads them."""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Proxy:
    """An `http://` or `https://` proxy. Its credentials go only into the
    Proxy-Authorization header: `label` and the repr never show them."""

    scheme: str
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def secrets(self) -> list[str]:
        """What must be masked wherever it shows: the header, its token, the password."""
        if self.authorization is None:
            return []
        return [self.authorization, self.authorization.partition(" ")[2], self.password or ""]


def parse_proxy(url: str) -> Proxy:
    """`http://user:pass@host:port` (a URL without a scheme is http, as curl takes it)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"a proxy URL must be http:// or https://, not {parts.scheme}://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("the proxy URL has an invalid port") from exc
    if not parts.hostname:
        raise ValueError("the proxy URL names no host")
    authorization = password = None
    if parts.username is not None:
        password = unquote(parts.password or "")
        pair = f"{unquote(parts.username)}:{password}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    default = 443 if parts.scheme == "https" else 80
    return Proxy(parts.scheme, parts.hostname, port or default, authorization, password or None)


def _variable(environ: Mapping[str, str], name: str) -> str:
    """The lowercase spelling first, as curl and Python's urllib read them."""
    return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()


class NoProxy:
    """`NO_PROXY`: `*`, host names (a name also covers its subdomains; a leading dot or
    `*.` means the same), `host:port`, IP addresses and CIDR ranges."""

    def __init__(self, value: str) -> None:
        self.everything = False
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (part.strip().lower() for part in value.split(",")):
            if not entry:
                continue
            if entry == "*":
                self.everything = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name, port = _split_port(entry)
            self._names.append((name.removeprefix("*").lstrip("."), port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().rstrip(".").strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self._networks):
            return True
        return any(
            (host == name or host.endswith("." + name)) and wanted in (None, port)
            for name, wanted in self._names
        )


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port` or `[v6]:port` → (host, port); a bare host has no port."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, colon, port = entry.partition(":")
        if not colon:
            return entry, None
    return name, int(port) if port.isdigit() else None


def from_environment(
    scheme: str, host: str, port: int, environ: Mapping[str, str] = os.environ
) -> Proxy | None:
    """The proxy the environment names for a `scheme` URL to host:port, if any."""
    url = _variable(environ, f"{scheme}_proxy")
    if not url or NoProxy(_variable(environ, "no_proxy")).matches(host, port):
        return None
    return parse_proxy(url)


def proxy_for(
    base_url: str, configured: str | None, environ: Mapping[str, str] = os.environ
) -> Proxy | None:
    """A provider's own proxy (`configured`), none for `none`, else the environment's."""
    if configured == "none":
        return None
    if configured is not None:
        return parse_proxy(configured)
    url = urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return from_environment(url.scheme, url.hostname or "", port, environ)


def environment_secrets(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The credentials of the proxies the environment names, to be masked everywhere."""
    found: list[str] = []
    for scheme in ("http", "https"):
        url = _variable(environ, f"{scheme}_proxy")
        try:
            proxy = parse_proxy(url) if url else None
        except ValueError:
            continue
        found += proxy.secrets() if proxy is not None else []
    return found
