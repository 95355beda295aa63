"""The one server-address parser: every written form, defaults, and one error line for a malformed address."""

from __future__ import annotations

import pytest

from rmt.core.errors import ConfigError
from rmt.core.hosts import base_url, parse_address, split_host


@pytest.mark.parametrize(("text", "expected"), [
    ("http://10.0.0.5:8000", ("10.0.0.5", 8000)),
    ("10.0.0.5:8001/", ("10.0.0.5", 8001)),
    ("triton", ("triton", 8000)),
    ("", ("127.0.0.1", 8000)),
    (None, ("127.0.0.1", 8000)),
    ("[::1]:9000", ("::1", 9000)),
])
def test_split_host_reads_every_form(text: str | None, expected: tuple[str, int]) -> None:
    assert split_host(text, 8000) == expected


def test_address_keeps_scheme_path_and_query_and_rebuilds_the_url() -> None:
    address = parse_address("https://prom.example:9090/sub/?a=1")
    assert (address.scheme, address.host, address.port, address.path, address.query) == (
        "https", "prom.example", 9090, "/sub", "a=1")
    assert base_url("127.0.0.1:8002/") == "http://127.0.0.1:8002"
    assert parse_address("[::1]:8000").base_url == "http://[::1]:8000"


@pytest.mark.parametrize("text", ["host:notaport", "host:70000", "http://:8000"])
def test_malformed_address_is_one_config_error_naming_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"bad --server-url .*HOST:PORT"):
        parse_address(text, flag="--server-url")


def test_a_required_port_must_be_given() -> None:
    with pytest.raises(ConfigError, match="--server-url"):
        parse_address("triton", flag="--server-url", require_port=True)
    assert parse_address("triton:8000", require_port=True).port == 8000
