"""tritonserver's command-line flags as rmt reads them: a flag's value in a command line, ``--rate-limit-resource``.

One parser serves the server launcher (checking what it is asked to start), the collector (finding a running server's
ports in its command line) and the checkers (the rate-limit budget a run's server was given).
"""

from __future__ import annotations

import re

from rmt.core.errors import ConfigError

_RESOURCE_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-]*):(?P<count>\d+)(?::(?P<device>\d+))?$")


def parse_rate_limit_resource(spec: str) -> tuple[str, int, int | None]:
    """Parse ``NAME:COUNT[:DEVICE]`` (tritonserver's ``--rate-limit-resource``); raise ConfigError when malformed."""
    match = _RESOURCE_RE.match(spec.strip())
    if not match:
        raise ConfigError(
            f"bad rate-limit resource {spec!r}: write NAME:COUNT or NAME:COUNT:DEVICE, e.g. R1:4 or R1:4:0"
        )
    device = match.group("device")
    return match.group("name"), int(match.group("count")), int(device) if device is not None else None


def server_flag(cmdline: list[str], flag: str) -> str | None:
    """The value of ``--flag=V`` or ``--flag V`` in a tritonserver command line (last one wins), else None."""
    value = None
    for i, arg in enumerate(cmdline):
        if arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
        elif arg == flag and i + 1 < len(cmdline):
            value = cmdline[i + 1]
    return value
