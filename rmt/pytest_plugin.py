"""pytest fixtures for a real, embedded tritonserver (registered through the ``pytest11`` entry point).

- ``triton_server`` (session): one server with the zoo, shared by the tests of a session.
- ``triton_server_factory`` (function): ``factory(**ServerOptions fields)`` starts a server that is stopped when
  the test ends, whatever happens.

Both skip the test with the install hint when the ``server`` extra is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rmt.core.errors import ServerExtraMissing
from rmt.install import find_triton_install
from rmt.server import EmbeddedServer, ServerOptions

ServerFactory = Callable[..., EmbeddedServer]


def _require_server() -> None:
    try:
        find_triton_install()
    except ServerExtraMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def triton_server() -> Iterator[EmbeddedServer]:
    """A tritonserver serving the zoo on free loopback ports for the whole session."""
    _require_server()
    with EmbeddedServer(ServerOptions()) as server:
        yield server


@pytest.fixture
def triton_server_factory() -> Iterator[ServerFactory]:
    """Start servers with custom :class:`ServerOptions`; each is stopped at the end of the test."""
    _require_server()
    started: list[EmbeddedServer] = []

    def factory(**options: Any) -> EmbeddedServer:
        server = EmbeddedServer(ServerOptions(**options))
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()
