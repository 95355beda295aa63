"""The one parser of server addresses: ``http://host:port/path``, ``host:port``, ``host`` or ``[::1]:port``.

Every flag and option that names a server (Locust's ``--host``, ``--rmt-grpc-host``, ``rmt collect --server-url``,
sidecar and Prometheus URLs, ``rmt run --host``) goes through :func:`parse_address`; a malformed one is one
:class:`~rmt.core.errors.ConfigError` naming the flag and the accepted form.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from rmt.core.errors import ConfigError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Address:
    """A parsed server address."""

    scheme: str
    """``http`` when the text named none."""
    host: str
    port: int | None
    """None when the text named none and no default was given."""
    path: str
    """The path after the port, without a trailing ``/`` ('' for none)."""
    query: str = ""
    """The query after ``?`` ('' for none)."""

    @property
    def netloc(self) -> str:
        """``host[:port]`` (an IPv6 host in brackets), as an HTTP ``Host`` header names it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    @property
    def base_url(self) -> str:
        """``scheme://host[:port][path]``, for joining API paths to."""
        return f"{self.scheme}://{self.netloc}{self.path}"


def parse_address(text: str | None, default_port: int | None = None, *, flag: str = "address",
                  require_port: bool = False) -> Address:
    """``text`` (empty: the loopback address) as an :class:`Address`; ConfigError naming ``flag`` when malformed,
    or when ``require_port`` and neither the text nor ``default_port`` gives a port."""
    raw = (text or "").strip() or LOOPBACK
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or (require_port and port is None and default_port is None):
        raise ConfigError(f"bad {flag} {text!r}: write HOST:PORT or http://HOST:PORT, e.g. 127.0.0.1:8000")
    return Address(parts.scheme or "http", parts.hostname, port if port is not None else default_port,
                   parts.path.rstrip("/"), parts.query)


def split_host(text: str | None, default_port: int, *, flag: str = "--host") -> tuple[str, int]:
    """``http://h:p`` / ``h:p`` / ``h`` → ``(h, p)``, ``default_port`` when the text names no port."""
    address = parse_address(text, default_port, flag=flag)
    assert address.port is not None
    return address.host, address.port


def base_url(text: str, *, flag: str = "URL") -> str:
    """``host:port`` or a URL as ``http://host:port[/path]`` (no trailing ``/``), to join API paths to."""
    return parse_address(text, flag=flag).base_url
