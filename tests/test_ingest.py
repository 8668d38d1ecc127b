"""`benchsync ingest PATH...`: backfill by hand with the same pipeline and dedup."""

from __future__ import annotations

import os

import pytest

from conftest import Workspace, sample_log


def test_ingest_files_folders_and_single_files_once(ws: Workspace, tmp_path) -> None:
    old = tmp_path / "old"
    (old / "2019").mkdir(parents=True)
    for i in range(4):
        (old / "2019" / f"{i}.log").write_bytes(sample_log(i))
    single = tmp_path / "one.log"
    single.write_bytes(sample_log(99))
    (old / "copy.log").write_bytes(sample_log(0))  # same content as 2019/0.log
    result = ws.run("ingest", str(old), str(single))
    assert result.code == 0, result.err
    assert ws.count("files") == 5
    assert ws.count("receipts") == 6
    assert {r[0] for r in ws.rows("SELECT DISTINCT channel FROM receipts")} == {"manual"}
    items = {r[0] for r in ws.rows("SELECT item FROM receipts")}
    assert str(single) in items and str(old / "2019" / "3.log") in items
    again = ws.run("ingest", str(old), str(single))
    assert again.code == 0
    assert ws.count("receipts") == 6, "ingesting the same paths twice files nothing new"
    assert sorted(os.listdir(old / "2019")) == [f"{i}.log" for i in range(4)], "never moved"


def test_ingest_dry_run_changes_nothing(ws_sqlite: Workspace, tmp_path) -> None:
    (tmp_path / "a.log").write_bytes(sample_log(1))
    result = ws_sqlite.run("ingest", "--dry-run", "-v", str(tmp_path / "a.log"))
    assert result.code == 0
    assert "would file item=" in result.err
    assert ws_sqlite.count("files") == 0
    assert not (ws_sqlite.store / "tmp").exists() or not os.listdir(ws_sqlite.store / "tmp")


def test_ingest_of_a_missing_path_is_reported_not_raised(ws_sqlite: Workspace, tmp_path) -> None:
    result = ws_sqlite.run("ingest", str(tmp_path / "nope.log"))
    assert result.code == 1
    assert "unreadable: No such file or directory" in result.err
    assert "Traceback" not in result.err


def test_ingest_shows_a_progress_bar_on_a_terminal(ws_sqlite: Workspace, tmp_path) -> None:
    import shlex
    import shutil
    import subprocess
    import sys

    from conftest import BIN

    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is needed to give the command a terminal")
    (tmp_path / "a.log").write_bytes(sample_log(1))
    command = shlex.join(
        [sys.executable, str(BIN / "benchsync"), "ingest", str(tmp_path / "a.log"),
         "--config", str(ws_sqlite.config)]
    )  # fmt: skip
    out = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
        timeout=60,
    )
    assert out.returncode == 0
    assert "filing" in out.stdout and "100%" in out.stdout
    assert ws_sqlite.count("files") == 1
