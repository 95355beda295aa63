"""The rate-limit pre-flight agrees with the real tritonserver: same refusal, same resource, same counts."""

from __future__ import annotations

import re

import pytest

from rmt.check.ratelimit import preflight
from rmt.core.errors import ServerStartError
from rmt.core.resources import ZOO_REPOSITORY
from rmt.pytest_plugin import ServerFactory

TRITON_SENTENCE = re.compile(r'Resource count for "(?P<name>[^"]+)" is limited to (?P<limit>\d+) which will prevent '
                             r"scheduling of one or more model instances, the minimum required count is "
                             r"(?P<required>\d+)")


def test_preflight_predicts_the_servers_refusal(triton_server_factory: ServerFactory) -> None:
    flags = ["R1:1"]
    (short,) = preflight(ZOO_REPOSITORY, flags)
    with pytest.raises(ServerStartError) as err:
        triton_server_factory(rate_limit_resources=flags)
    said = TRITON_SENTENCE.search(str(err.value) + "\n" + err.value.log_tail)
    assert said is not None, err.value.log_tail
    assert (said["name"], int(said["limit"]), int(said["required"])) == (short.resource, short.limit, short.required)
    assert short.message in str(err.value) + err.value.log_tail


def test_a_budget_the_preflight_accepts_is_accepted_by_the_server(triton_server_factory: ServerFactory) -> None:
    flags = ["R1:2"]
    assert preflight(ZOO_REPOSITORY, flags) == []
    server = triton_server_factory(rate_limit_resources=flags)
    assert server.is_running()
