"""A fresh, empty database on the cluster's PostgreSQL server, for restores (tests/ops).

`ThrowawayDatabase(cluster, label)` creates `<cluster database>_<label>` on the server of
`cluster` (tests/ops/cluster.py) and drops it on exit, also when the test fails. Nothing
else on the server is touched.
"""

from __future__ import annotations

import psycopg

from tests.ops.cluster import Cluster, _admin_params, _drop_database


class ThrowawayDatabase:
    def __init__(self, cluster: Cluster, label: str) -> None:
        self.server_url = cluster.server_url
        self.name = f"{cluster.db_name}_{label}"
        self.url = f"{self.server_url}/{self.name}"

    def __enter__(self) -> ThrowawayDatabase:
        with psycopg.connect(**_admin_params(self.server_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        _drop_database(self.server_url, self.name)
