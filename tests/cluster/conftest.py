"""The namespaced cluster (``thinnest cluster``'s topology), one per module: it takes a minute
to start and most of the machine while it runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engine.conftest import speak  # noqa: F401 (the spoken-audio fixture)
from thinnest.cluster.topology import Cluster, ClusterOptions


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("the cluster's hosts are network namespaces: run the tests as root")
    running = Cluster(
        ClusterOptions(
            workdir=tmp_path_factory.mktemp("cluster"),
            worker_max_jobs=2,
            worker_idle_processes=1,
            # The shipped model's answers are short; the tests wait for them.
            env={"THINNEST_LOG_LEVEL": "INFO"},
        )
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
