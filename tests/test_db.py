"""Schema migrations on both dialects: initdb, first use, concurrent first use."""

from __future__ import annotations

import os
import subprocess
import sys

from benchsync.db import connect, redact_url
from conftest import BIN, Workspace


def test_initdb_applies_every_migration_once(ws: Workspace) -> None:
    first = ws.run("initdb")
    assert first.code == 0, first.err
    assert "applied: 1, 2" in first.out
    again = ws.run("initdb")
    assert again.code == 0 and "applied: none" in again.out
    assert ws.rows("SELECT version FROM schema_migrations ORDER BY version")[:2] == [(1,), (2,)]


def test_four_jobs_starting_together_on_a_new_database_all_succeed(ws: Workspace) -> None:
    env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(BIN / "benchsync"), "initdb", "--config", str(ws.config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = [(p.wait(60), p.stderr.read().decode()) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert ws.count("schema_migrations") >= 2


def test_transactions_roll_back_on_error(db_url: str) -> None:
    db = connect(db_url)
    try:
        try:
            with db.transaction():
                db.execute("INSERT INTO source_state (source, key, value) VALUES ('s', 'k', 'v')")
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert db.query("SELECT COUNT(*) FROM source_state") == [(0,)]
    finally:
        db.close()


def test_redact_url_drops_the_password() -> None:
    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u@h:5432/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
