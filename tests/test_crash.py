"""Crash safety: SIGKILL ftp_sync at random moments; every file ends up filed exactly once."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import BIN, Workspace, _workspace, md5, sample_log

KILLS = 25
FILES = 500


@pytest.fixture
def pg_ws(tmp_path, pg_url) -> Workspace:
    return _workspace(tmp_path, pg_url)


def _start(ws: Workspace) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(BIN / "ftp_sync"), "--config", str(ws.config)],
        env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _check_nothing_lost(ws: Workspace, originals: dict[str, bytes]) -> None:
    """Every item gone from the queue has its content filed and a receipt."""
    present = set(os.listdir(ws.queue))
    filed_md5 = {r[0] for r in ws.rows("SELECT md5 FROM files")}
    receipts = {r[0] for r in ws.rows("SELECT item FROM receipts")}
    for name, data in originals.items():
        if name not in present:
            assert md5(data) in filed_md5, f"{name} deleted but its content is not filed"
            assert name in receipts, f"{name} deleted without a receipt"


def test_sigkill_at_25_random_moments_then_rerun_files_everything_once(pg_ws: Workspace) -> None:
    ws = pg_ws
    ws.configure(ftp={"after_ingest": "delete"})
    seed = int(os.environ.get("BENCHSYNC_CRASH_SEED", time.time()))
    rng = random.Random(seed)
    originals = {f"run-{i}-benchmark.log": sample_log(i % 450, 3000 + i) for i in range(FILES)}
    for name, data in originals.items():
        (ws.queue / name).write_bytes(data)
    kills = 0
    while kills < KILLS:
        proc = _start(ws)
        time.sleep(rng.uniform(0.05, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_nothing_lost(ws, originals)
        if not os.listdir(ws.queue):  # all done before the kills ran out: start over
            for name, data in originals.items():
                (ws.queue / name).write_bytes(data)
    final = ws.run("ftp-sync")
    assert final.code == 0, f"seed={seed}: {final.err}"
    assert os.listdir(ws.queue) == [], f"seed={seed}"
    _check_nothing_lost(ws, originals)

    distinct = {md5(d) for d in originals.values()}
    files = dict(ws.rows("SELECT md5, stored_path FROM files"))
    assert set(files) == distinct, f"seed={seed}"
    assert ws.rows(
        "SELECT COUNT(*) FROM (SELECT source, item, file_id FROM receipts"
        " GROUP BY source, item, file_id HAVING COUNT(*) > 1) d"
    ) == [(0,)]
    assert ws.rows(
        "SELECT COUNT(*) FROM receipts r LEFT JOIN files f ON f.id = r.file_id WHERE f.id IS NULL"
    ) == [(0,)]
    for digest, stored in files.items():
        data = gzip.decompress((ws.store / stored).read_bytes())
        assert hashlib.md5(data).hexdigest() == digest
    assert list((ws.store / "tmp").iterdir()) == [], "no temp file left after the next run"
    print(f"crash test seed={seed} kills={kills}")
