"""The same fixtures as tests/conftest.py with the sale data on a real local Redis Cluster
(three masters, common/development/cluster.py): `settings` gains REDIS_CLUSTER_NODES, so
`clients.sales_redis` is a RedisCluster while the broker, rate limits and the token denylist
stay on the session's plain Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.development.cluster import LocalCluster
from common.platform.settings import Settings


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def settings(settings: Settings, redis_cluster: LocalCluster) -> Settings:
    return settings.model_copy(update={"redis_cluster_nodes": redis_cluster.nodes_setting})
