"""A fresh, empty database on the cluster's PostgreSQL server, for restores (tests/ops).

`ThrowawayDatabase(cluster, label)` creates `<OPS_DB_PREFIX>_<label>_<pid>_<random>` on the
server of `cluster` (tests/ops/cluster.py), named like the cluster's own databases so that
one left by a killed test process is dropped at the next session, and drops it on exit,
also when the test fails. Nothing else on the server is touched.
"""

from __future__ import annotations

import os
import secrets

import psycopg

from tests.ops.cluster import DB_PREFIX, Cluster, _admin_params, _drop_database


class ThrowawayDatabase:
    def __init__(self, cluster: Cluster, label: str) -> None:
        self.server_url = cluster.server_url
        self.name = f"{DB_PREFIX}_{label}_{os.getpid()}_{secrets.token_hex(4)}"
        self.url = f"{self.server_url}/{self.name}"

    def __enter__(self) -> ThrowawayDatabase:
        with psycopg.connect(**_admin_params(self.server_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        _drop_database(self.server_url, self.name)
