"""scp_sync on bad remote input and a dying sshd: one clear line each, nothing half-filed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import BIN, Workspace, md5, sample_log, stored_bytes
from server_fixtures import require_or_skip
from servers.servers import ServerUnavailable, start_sshd
from test_sftp import drop_folder, last_summary, use_sftp


def test_symlinks_in_the_remote_folder_are_never_followed(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder, recursive="true")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root's secret, not a log\n" * 10)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "other.log").write_bytes(sample_log(7))
    os.symlink(secret, folder / "link.log")
    os.symlink(outside, folder / "linked-folder")
    (folder / "good.log").write_bytes(sample_log(1))
    result = ws.run("scp-sync")
    assert result.code == 1, "the links are rejected, the rest is filed"
    reasons = dict(ws.rows("SELECT item, reason FROM source_items WHERE status = 'rejected'"))
    assert reasons == {
        "link.log": "symlink: not followed",
        "linked-folder": "symlink: not followed",
    }
    assert ws.rows("SELECT item FROM receipts") == [("good.log",)]
    assert ws.rows("SELECT md5 FROM files") == [(md5(sample_log(1)),)]
    assert os.path.islink(folder / "link.log") and secret.exists()


def test_hostile_remote_names_are_rejected_and_the_listing_goes_on(
    ws_sqlite: Workspace, sftp_server
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder, after_ingest="delete")
    raw = os.fsencode(folder)
    for name, i in ((b"new\nline.log", 1), (b"bad-\xff.log", 2), (b"-dash.log", 3), (b"ok.log", 4)):
        with open(raw + b"/" + name, "wb") as f:
            f.write(sample_log(i))
    (folder / "empty.log").write_bytes(b"")
    (folder / "sub").mkdir()
    result = ws.run("scp-sync")
    assert result.code == 1 and "Traceback" not in result.err
    reasons = dict(ws.rows("SELECT item, reason FROM source_items WHERE status = 'rejected'"))
    assert reasons["new\nline.log"].startswith("hostile name: control characters")
    assert reasons["bad-\\xff.log"] == "hostile name: not valid UTF-8"
    assert reasons["empty.log"] == "empty file"
    assert reasons["sub"].startswith("folder")
    assert {r[0] for r in ws.rows("SELECT item FROM receipts")} == {"-dash.log", "ok.log"}
    left = sorted(os.listdir(raw))
    assert left == sorted([b"new\nline.log", b"bad-\xff.log", b"empty.log", b"sub"])
    assert 'item="new\\nline.log"' in ws.log_text("scp_sync"), "one event, one line"
    assert ws.run("scp-sync").code == 0, "rejections are remembered, not failed again"


def test_ten_thousand_remote_files_are_listed_in_one_pass(
    ws_sqlite: Workspace, sftp_server
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder)
    for i in range(10_000):  # uploads still running: listed, then skipped without a fetch
        (folder / f"run-{i:05d}-benchmark.log.part").write_bytes(b"x")
    start = time.monotonic()
    result = ws.run("scp-sync")
    elapsed = time.monotonic() - start
    assert result.code == 0, result.err
    assert last_summary(ws) == ("seen=10000 new=0 dup=0 failed=0 skipped=10000", "ok")
    [(entries, requests, seconds)] = re.findall(
        r"INFO listed \S+ entries=(\d+) requests=(\d+) seconds=([\d.]+)", ws.log_text("scp_sync")
    )
    assert int(entries) == 10_000
    # OPENDIR + one READDIR per 100 names (OpenSSH's batch; "." and ".." too) + the final
    # EOF: 103, and no per-file STAT
    assert int(requests) <= 10_000 // 100 + 3
    assert float(seconds) < 5 and elapsed < 30, (seconds, elapsed)


def test_sshd_killed_mid_transfer_is_exit_3_and_the_next_run_files_the_item_once(
    ws_sqlite: Workspace, tmp_path: Path
) -> None:
    ws = ws_sqlite
    home = tmp_path / "home"
    home.mkdir()
    try:
        srv = start_sshd(home=home)
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        big = os.urandom(96 << 20)  # incompressible: about a second to move
        (home / "big.log").write_bytes(big)
        use_sftp(ws, srv, home, after_ingest="delete")
        ws.configure(limits={"max_file_bytes": "200 MiB"})
        cmd = [sys.executable, str(BIN / "benchsync"), "scp-sync", "--config", str(ws.config)]
        env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        _wait_for_spill(ws.store / "tmp", proc)
        srv.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "connection lost" in err and "Traceback" not in err
        assert ws.count("files") == 0 and ws.count("receipts") == 0, "nothing half-filed"
        assert (home / "big.log").read_bytes() == big, "not deleted"
    finally:
        srv.stop()
    again = start_sshd(home=home)  # the server comes back (new port, new host key)
    try:
        use_sftp(ws, again, home, after_ingest="delete")
        result = ws.run("scp-sync")
        assert result.code == 0, result.err
        assert ws.rows("SELECT md5 FROM files") == [(md5(big),)]
        assert stored_bytes(ws.store, md5(big)) == big
        assert not (home / "big.log").exists(), "deleted once filed"
    finally:
        again.stop()


def _wait_for_spill(tmp: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until the download is under way: the store spills compressed data to tmp/."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(p.stat().st_size > (8 << 20) for p in tmp.iterdir()):
                return
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise AssertionError(f"the transfer never got under way (exit {proc.poll()})")
