"""One run at a time per job (flock), and no duplicates across collectors (database keys)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from conftest import BIN, Workspace, _workspace, sample_log

N = 600


@pytest.fixture
def pg_ws(tmp_path, pg_url) -> Workspace:
    return _workspace(tmp_path, pg_url)


def _fill(ws: Workspace, n: int = N) -> None:
    for i in range(n):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i % (n - 50), 4000))


def _popen(ws: Workspace, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(BIN / "ftp_sync"), "--config", str(ws.config)],
        env={**os.environ, "BENCHSYNC_NO_VENV": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_run_while_another_holds_the_lock_logs_skipped_and_exits_0(ws: Workspace) -> None:
    (ws.queue / "a.log").write_bytes(sample_log(1))
    lock = ws.root / "lock" / "ftp_sync.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        result = ws.run("ftp-sync")
    assert result.code == 0
    assert "INFO skipped: locked" in ws.log_text()
    assert ws.count("files") == 0 and ws.count("runs") == 0
    assert ws.run("ftp-sync").code == 0, "the lock dies with its holder"
    assert ws.count("files") == 1


def test_two_runs_started_together_file_each_item_once(pg_ws: Workspace) -> None:
    ws = pg_ws
    _fill(ws)
    procs = [_popen(ws), _popen(ws)]
    codes = [p.wait(120) for p in procs]
    assert codes == [0, 0]
    assert "skipped: locked" in ws.log_text()
    assert ws.count("files") == N - 50
    assert ws.count("receipts") == N


def test_two_collectors_with_their_own_locks_share_postgresql_without_duplicates(
    pg_ws: Workspace,
) -> None:
    ws = pg_ws
    _fill(ws)
    procs = [
        _popen(ws, {"BENCHSYNC_LOCKS_DIR": str(ws.root / "host-a")}),
        _popen(ws, {"BENCHSYNC_LOCKS_DIR": str(ws.root / "host-b")}),
    ]
    codes = [p.wait(120) for p in procs]
    assert codes == [0, 0]
    assert ws.count("files") == N - 50
    assert ws.count("receipts") == N
    assert ws.rows(
        "SELECT COUNT(*) FROM (SELECT md5 FROM files GROUP BY md5 HAVING COUNT(*) > 1) d"
    ) == [(0,)]
