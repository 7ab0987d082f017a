"""Backup and restore keep the consent ledger verifiable (issue 16; docs/operations.md,
"Backup and restore").

The tested procedure, on real PostgreSQL databases of this machine (created and dropped
here: the harness's fresh database, tests/ops/cluster.py, and restore targets beside it):

1. a database migrated and filled through the services under production settings: residents,
   their grants, withdrawals and renewals, one erased resident, a signed tree head, a few
   events appended after it and not yet integrated (tests/ops/backup_fill.py);
2. `pg_dump -Fc` of it while it is in use (the dump is one transaction's snapshot);
3. `pg_restore` into a fresh, empty database;
4. on the restored database: `manage.py verify_ledger` passes, the signed tree heads and the
   ledger head are the same rows as the original's, a receipt issued before the backup still
   verifies and the restored database gives the same inclusion proof for it against the same
   signed head;
5. the restored service carries on: `ledger_sequencer --once` integrates the pending events
   and signs a new head, and `verify_ledger` still passes.

And the check can fail: a restore that lost the last ledger row is refused by verify_ledger.
A dump taken while residents keep deciding and the sequencer keeps integrating restores to a
ledger that verifies too (a snapshot of committed transactions: the events form a prefix).

    OPS_PROFILE=short .venv/bin/python -m pytest tests/ops/test_backup_restore.py --ops

(the short profile fills fewer residents and writes for less time during the dump).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.ops.cluster import Cluster
from tests.ops.pg import ThrowawayDatabase

pytestmark = [pytest.mark.ops]

ROOT = Path(__file__).resolve().parents[2]
SHORT = os.environ.get("OPS_PROFILE", "full") == "short"
RESIDENTS = 12 if SHORT else 40
CHURN_SECONDS = 5 if SHORT else 12


def fill_script(env: dict[str, str], *argv: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.ops.backup_fill", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in conn.execute(query)
        ]


TREE_HEADS = "SELECT id, tree_size, root_hash, timestamp, kid, signature FROM consent_treehead ORDER BY id"
LEDGER_HEAD = "SELECT id, size, root_hash, frontier FROM consent_ledgerhead ORDER BY id"


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The original database, filled and dumped; its environment, the dump and what was filled."""
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (apt-get install postgresql-client)")
    tmp = tmp_path_factory.mktemp("backup")
    # A migrated production database (signing keys made), no processes: the fill is the load.
    with Cluster(webs=0, workers=0, redis_url="", name="load_backup") as cluster:
        filled = fill_script(cluster.env, "fill", str(RESIDENTS))
        dump = tmp / "cum.dump"
        subprocess.run(
            ["pg_dump", "-Fc", "--no-owner", "-f", str(dump), "-d", cluster.database_url],
            check=True,
            timeout=300,
        )
        (tmp / "filled.json").write_text(json.dumps(filled))
        yield {"cluster": cluster, "dump": dump, "filled": filled, "tmp": tmp}


def restore(dump: Path, url: str) -> None:
    subprocess.run(
        ["pg_restore", "--exit-on-error", "--no-owner", "-d", url, str(dump)], check=True, timeout=300
    )


def manage(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_a_restored_database_verifies_and_keeps_its_signed_heads_and_receipts(
    backed_up: dict[str, Any],
) -> None:
    filled, source = backed_up["filled"], backed_up["cluster"]
    with ThrowawayDatabase(source, "load_restored") as target:
        restore(backed_up["dump"], target.url)
        env = {**source.env, "DATABASE_URL": target.url}

        verified = json.loads(manage(env, "verify_ledger", "--json").stdout.strip().splitlines()[-1])
        assert verified["ok"], verified
        # Every event came back, the three appended after the signed head still pending.
        assert (verified["size"], verified["pending"]) == (filled["events"], 3)
        assert filled["signed_size"] == filled["events"] - 3
        assert verified["tree_heads_checked"] >= 1

        # The same signed heads and the same integrated tree, row for row.
        assert rows(target.url, TREE_HEADS) == rows(source.database_url, TREE_HEADS)
        assert rows(target.url, LEDGER_HEAD) == rows(source.database_url, LEDGER_HEAD)
        assert rows(target.url, "SELECT count(*) FROM consent_ledgerevent") == [(filled["events"],)]

        # A receipt a resident kept from before the backup still verifies, and the restored
        # database proves its inclusion in the same signed head.
        checked = fill_script(env, "check", str(backed_up["tmp"] / "filled.json"))
        assert checked == {
            "receipt_leaf_index": filled["event_seq"],
            "receipt_entry_matches_row": True,
            "proof_equal": True,
            "included": True,
        }

        # The restored service carries on where the original stopped.
        manage(env, "ledger_sequencer", "--once")
        after = json.loads(manage(env, "verify_ledger", "--json").stdout.strip().splitlines()[-1])
        assert after["ok"], after
        assert (after["size"], after["pending"]) == (filled["events"], 0)
        assert after["root_hash"] == verified["root_hash"]  # the root the pending events announced
        assert after["tree_heads_checked"] == verified["tree_heads_checked"] + 1


def test_a_restore_that_lost_a_ledger_row_is_refused_by_verify_ledger(backed_up: dict[str, Any]) -> None:
    with ThrowawayDatabase(backed_up["cluster"], "load_damaged") as target:
        restore(backed_up["dump"], target.url)
        # What a partial restore (or a hand "fix" by the table owner) would leave: the last
        # integrated event gone. Only a superuser can get past the append-only triggers.
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                "DELETE FROM consent_ledgerevent WHERE seq = %s", (backed_up["filled"]["signed_size"] - 1,)
            )
        env = {**backed_up["cluster"].env, "DATABASE_URL": target.url}
        result = manage(env, "verify_ledger", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "ledger verification FAILED" in result.stderr
        assert f"#{backed_up['filled']['signed_size'] - 1}" in result.stderr


def test_a_backup_taken_while_residents_decide_restores_to_a_verifiable_ledger(tmp_path: Path) -> None:
    with Cluster(webs=0, workers=0, redis_url="", name="load_churn") as cluster:
        fill_script(cluster.env, "fill", "8")
        before = cluster.sql("SELECT count(*) FROM consent_ledgerevent")[0][0]

        def start(*argv: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, *argv], cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip

        writer = start("-m", "tests.ops.backup_fill", "churn", str(CHURN_SECONDS))
        sequencer = start(
            "manage.py", "ledger_sequencer", "--interval", "0.1", "--max-seconds", str(CHURN_SECONDS + 2)
        )
        try:
            # Dump once the writer is under way (a handful of events past the fill).
            deadline = time.monotonic() + 60
            while cluster.sql("SELECT count(*) FROM consent_ledgerevent")[0][0] < before + 10:
                assert time.monotonic() < deadline, "the writer appended nothing"
                assert writer.poll() is None, writer.communicate()
                time.sleep(0.2)
            dump = tmp_path / "during.dump"
            subprocess.run(
                ["pg_dump", "-Fc", "--no-owner", "-f", str(dump), "-d", cluster.database_url],
                check=True,
                timeout=300,
            )
        finally:
            out, err = writer.communicate(timeout=120)
            sequencer.communicate(timeout=120)
        assert writer.returncode == 0, out + err
        assert sequencer.returncode == 0
        after = cluster.sql("SELECT count(*) FROM consent_ledgerevent")[0][0]

        with ThrowawayDatabase(cluster, "load_restored") as target:
            restore(dump, target.url)
            env = {**cluster.env, "DATABASE_URL": target.url}
            verified = json.loads(manage(env, "verify_ledger", "--json").stdout.strip().splitlines()[-1])
            assert verified["ok"], verified
            assert before + 10 <= verified["size"] <= after
            manage(env, "ledger_sequencer", "--once")
            caught_up = json.loads(manage(env, "verify_ledger", "--json").stdout.strip().splitlines()[-1])
            assert caught_up["ok"], caught_up
            assert (caught_up["size"], caught_up["pending"]) == (verified["size"], 0)
