"""Bad items in the queue: one log line and a source_items reason each; the run goes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Workspace, sample_log


def _reasons(ws: Workspace) -> dict[str, str]:
    return dict(ws.rows("SELECT item, reason FROM source_items WHERE status = 'rejected'"))


def test_each_bad_item_is_logged_once_and_the_good_ones_are_filed(
    ws: Workspace, tmp_path: Path
) -> None:
    ws.configure(limits={"max_file_bytes": "1 KiB"}, ftp={"after_ingest": "delete"})
    q = ws.queue
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not yours")
    os.symlink(outside, q / "link.log")
    (q / "empty.log").write_bytes(b"")
    (q / "big.log").write_bytes(b"x" * 2048)
    (q / "new\nline.log").write_bytes(sample_log(3, 500))
    (q / os.fsdecode(b"bad-\xff.log")).write_bytes(sample_log(4, 500))
    (q / "folder").mkdir()
    (q / "-leading-dash.log").write_bytes(sample_log(5, 500))
    (q / "good.log").write_bytes(sample_log(6, 500))

    result = ws.run("ftp-sync")
    assert result.code == 1, "some items failed"
    assert "Traceback" not in result.err
    reasons = _reasons(ws)
    assert reasons["link.log"] == "symlink: not followed"
    assert reasons["empty.log"] == "empty file"
    assert reasons["big.log"].startswith("too large")
    assert reasons["new\nline.log"].startswith("hostile name: control characters")
    assert reasons["bad-\\xff.log"] == "hostile name: not valid UTF-8"
    assert reasons["folder"].startswith("folder")
    filed = {r[0] for r in ws.rows("SELECT item FROM receipts")}
    assert filed == {"-leading-dash.log", "good.log"}, "a leading dash is harmless here"
    assert sorted(os.listdir(q)) == sorted(
        [
            "link.log",
            "empty.log",
            "big.log",
            "new\nline.log",
            os.fsdecode(b"bad-\xff.log"),
            "folder",
        ]
    ), "rejected items stay in place for a person; filed ones were deleted"
    assert outside.read_bytes() == b"not yours"
    log = ws.log_text()
    assert log.count("rejected item=") == 6
    assert 'item="new\\nline.log"' in log, "names are escaped: one event, one line"

    again = ws.run("ftp-sync")
    assert ws.log_text().count("rejected item=") == 6, "rejections are logged once"
    assert again.code == 0, "an item rejected before is remembered, not failed again"


def test_a_store_outside_reach_is_exit_3_with_one_line(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    (ws.root / "store").write_text("a file where the store folder should be")
    result = ws.run("ftp-sync")
    assert result.code == 3
    assert result.err.count("\n") == 1 and "store" in result.err


def test_missing_queue_folder_is_exit_3(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    ws.configure(ftp={"source": "does-not-exist"})
    result = ws.run("ftp-sync")
    assert result.code == 3
    assert "queue folder" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("[ftp]\nsource = queue\nafter_ingest = shred\n", "after_ingest = 'shred'"),
        ("[ftp]\nsettle_seconds = 60\n", "[ftp] source is not set"),
        ("garbage", "cannot read configuration"),
    ],
)
def test_wrong_config_is_exit_2_with_one_line(ws_sqlite: Workspace, ini: str, message: str) -> None:
    ws_sqlite.config.write_text(ini)
    result = ws_sqlite.run("ftp-sync")
    assert result.code == 2
    assert message in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_missing_config_is_exit_2(tmp_path: Path, ws_sqlite: Workspace) -> None:
    ws_sqlite.config.unlink()
    result = ws_sqlite.run("ftp-sync")
    assert result.code == 2
    assert "no configuration" in result.err


def test_unreachable_postgresql_is_exit_3_and_the_password_is_never_shown(
    ws_sqlite: Workspace,
) -> None:
    from servers.servers import free_port

    ws = ws_sqlite
    ws.configure(database={"url": f"postgresql://bench:hunter2@127.0.0.1:{free_port()}/x"})
    (ws.queue / "a.log").write_bytes(sample_log(1))
    result = ws.run("ftp-sync")
    assert result.code == 3
    assert "database postgresql://bench@127.0.0.1" in result.err
    assert "hunter2" not in result.err + ws.log_text()
    assert "run=none done" in ws.log_text()


def test_secret_file_with_loose_mode_is_exit_2(ws_sqlite: Workspace) -> None:
    pw = ws_sqlite.root / "db.password"
    pw.write_text("hunter2")
    os.chmod(pw, 0o640)
    ws_sqlite.configure(database={"password_file": "db.password"})
    result = ws_sqlite.run("ftp-sync")
    assert result.code == 2 and "chmod 600" in result.err and "hunter2" not in result.err


def test_an_unreadable_file_fails_alone_and_is_filed_once_readable(ws_sqlite: Workspace) -> None:
    """Run without root's read-anything capabilities, so that mode 000 means unreadable."""
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's read-anything capability")
    ws = ws_sqlite
    locked = ws.queue / "locked.log"
    locked.write_bytes(sample_log(1))
    locked.chmod(0)
    (ws.queue / "open.log").write_bytes(sample_log(2))
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    result = ws.run("ftp-sync", prefix=drop)
    assert result.code == 1
    assert 'failed item=locked.log reason="unreadable: Permission denied"' in ws.log_text()
    assert {r[0] for r in ws.rows("SELECT item FROM receipts")} == {"open.log"}
    assert locked.exists()
    locked.chmod(0o644)
    assert ws.run("ftp-sync", prefix=drop).code == 0
    assert {r[0] for r in ws.rows("SELECT item FROM receipts")} == {"open.log", "locked.log"}


def test_version_works_from_a_checkout_that_is_not_installed(ws_sqlite: Workspace) -> None:
    import subprocess
    import sys

    from conftest import BIN

    out = subprocess.run(
        [sys.executable, str(BIN / "benchsync"), "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
    )
    assert out.returncode == 0 and out.stdout.startswith("benchsync ")


def test_an_unexpected_error_is_one_line_without_traceback(
    ws_sqlite: Workspace, monkeypatch, capsys
) -> None:
    import benchsync.status
    from benchsync.cli import main

    def broken(config):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(benchsync.status, "collect", broken)
    monkeypatch.delenv("BENCHSYNC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["status", "--config", str(ws_sqlite.config)])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error: RuntimeError: something nobody expected" in err
