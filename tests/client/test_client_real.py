"""The cluster-generic client scenarios, re-run against real node processes.

The tests below are the ones written against the ``cluster`` fixture contract; this module
overrides ``cluster`` with a RealCluster. Skipped until ``python -m zraft.node`` exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.real_cluster import RealCluster, node_available
from tests.client.test_client_actor import (  # noqa: F401 - collected here with real nodes
    test_connect_context_manager,
    test_write_query_through_futures,
)
from tests.client.test_client_api import (  # noqa: F401
    test_get_conf_from_a_follower,
    test_light_session_from_one_peer_asks_the_conf,
    test_stat,
    test_unreachable_peer_is_noproc,
    test_write_at_a_follower_follows_the_redirect,
    test_write_then_query_at_the_leader,
    test_wrong_cookie_is_unreachable,
)
from tests.client.test_client_cli import test_json_output, test_write_then_read  # noqa: F401
from tests.client.test_client_session import (  # noqa: F401
    test_connect_write_query,
    test_temporary_data_goes_with_the_session,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not node_available(), reason="the node process is not built yet"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RealCluster]:
    real = RealCluster(tmp_path)
    try:
        yield real
    finally:
        real.close()
