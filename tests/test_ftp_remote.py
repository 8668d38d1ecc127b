"""ftp_sync on a remote FTP/FTPS drop folder, end to end through bin/, against real servers.

pyftpdlib (plain and explicit FTPS, MLSD) and vsftpd (no MLSD: the LIST fallback); uploads
with ftplib and, once, with the real curl binary.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import BIN, Workspace, md5, sample_log, stored_bytes
from server_fixtures import require_or_skip
from servers.servers import ServerUnavailable, make_tls_cert, start_ftp_subprocess

SUMMARY = re.compile(r"INFO run=\d+ done seen=(\d+) new=(\d+) dup=(\d+) failed=(\d+) skipped=(\d+)")


def remote_folder(server) -> tuple[Path, str]:
    """A fresh folder on the shared test server: (its local path, its path on the server)."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    folder = Path(server.home) / name
    folder.mkdir()
    if os.geteuid() == 0 and hasattr(server, "dir"):  # vsftpd logs in a real account
        shutil.chown(folder, user=server.user)
    return folder, name


def use_ftp(ws: Workspace, server, path: str, tls: bool | None = None, **keys: str) -> str:
    """Point [ftp] at `path` on `server`, password in a 0600 file; return the source URL."""
    tls = getattr(server, "tls", False) if tls is None else tls
    secret = ws.root / "ftp.password"
    secret.write_text(server.password + "\n")
    secret.chmod(0o600)
    url = f"{'ftps' if tls else 'ftp'}://{server.user}@127.0.0.1:{server.port}/{path}"
    ftp = {"source": url, "password_file": str(secret), "settle_seconds": "0", "timeout": "10"}
    if tls:
        ftp["tls_ca"] = str(server.cafile)
    ws.configure(ftp={**ftp, **keys})
    return url


def counts(ws: Workspace) -> list[tuple[int, ...]]:
    return [tuple(map(int, m)) for m in SUMMARY.findall(ws.log_text())]


def test_new_files_are_filed_once_with_receipts_naming_the_url_without_password(
    ws: Workspace, ftp_server
) -> None:
    folder, path = remote_folder(ftp_server)
    contents = {f"run-{i}-benchmark.log": sample_log(i % 8, 20_000) for i in range(10)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    url = use_ftp(ws, ftp_server, path)
    first = ws.run("ftp-sync")
    assert first.code == 0, first.err
    assert (first.out, first.err) == ("", ""), "a sync job prints nothing on success"
    assert ws.count("files") == 8 and ws.count("receipts") == 10
    for data in contents.values():
        assert stored_bytes(ws.store, md5(data)) == data
    rows = ws.rows("SELECT channel, source, item, original_name, submitter FROM receipts")
    assert {r[:2] for r in rows} == {("ftp", url)}
    assert sorted(r[2] for r in rows) == sorted(contents)
    assert {r[4] for r in rows} == {None}
    assert ws.run("ftp-sync").code == 0
    assert counts(ws) == [(10, 8, 2, 0, 0), (10, 0, 0, 0, 0)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(contents), "keep leaves them"
    assert ftp_server.password not in ws.log_text() + first.err
    assert ".benchsync-clock" not in os.listdir(folder)


@pytest.mark.parametrize("action", ["delete", "move:done"])
def test_acks_delete_or_move_remote_files_only_after_filing(
    ws_sqlite: Workspace, ftp_server, action: str
) -> None:
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    for i in range(4):
        (folder / f"{i}.log").write_bytes(sample_log(i))
    use_ftp(ws, ftp_server, path, after_ingest=action)
    result = ws.run("ftp-sync")
    assert result.code == 0, result.err
    if action == "delete":
        assert os.listdir(folder) == []
    else:
        assert os.listdir(folder) == ["done"]
        assert sorted(os.listdir(folder / "done")) == [f"{i}.log" for i in range(4)]
    assert ws.rows("SELECT DISTINCT status FROM source_items") == [("filed",)]
    (folder / "0.log").write_bytes(sample_log(0))  # the same content uploaded again, later
    os.utime(folder / "0.log", (time.time() + 5, time.time() + 5))
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 4 and counts(ws)[-1][:3] == (1, 0, 1)
    if action != "delete":
        assert sorted(os.listdir(folder / "done")) == [
            "0.log",
            "0.log.1",
            "1.log",
            "2.log",
            "3.log",
        ]


def test_a_file_uploaded_with_curl_is_filed(ws_sqlite: Workspace, ftp_server, tmp_path) -> None:
    if not shutil.which("curl"):
        require_or_skip("curl is not installed")
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    log = tmp_path / "run-7-benchmark.log"
    log.write_bytes(sample_log(7, 50_000))
    cmd = ["curl", "-sS", "--user", f"{ftp_server.user}:{ftp_server.password}", "-T", str(log)]
    scheme = "ftp"
    if ftp_server.tls:
        cmd += ["--ssl-reqd", "--cacert", str(ftp_server.cafile)]
    cmd.append(f"{scheme}://127.0.0.1:{ftp_server.port}/{path}/")
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    use_ftp(ws, ftp_server, path)
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT item FROM receipts") == [("run-7-benchmark.log",)]
    assert stored_bytes(ws.store, md5(log.read_bytes())) == log.read_bytes()


def test_per_user_folders_are_walked_and_name_the_submitter(ws_sqlite: Workspace, ftp_server):
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    for user in ("alice", "bob"):
        (folder / user).mkdir()
        (folder / user / "run.log").write_bytes(sample_log(len(user)))
    (folder / "top.log").write_bytes(sample_log(99))
    use_ftp(ws, ftp_server, path, recursive="true", submitter_from_path="true")
    assert ws.run("ftp-sync").code == 0
    rows = sorted(ws.rows("SELECT item, submitter FROM receipts"))
    assert rows == [("alice/run.log", "alice"), ("bob/run.log", "bob"), ("top.log", None)]


def test_without_recursive_a_subfolder_is_rejected_once_and_not_entered(
    ws_sqlite: Workspace, ftp_server
) -> None:
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.log").write_bytes(sample_log(1))
    use_ftp(ws, ftp_server, path)
    assert ws.run("ftp-sync").code == 1
    assert ws.count("files") == 0
    assert "rejected item=sub size=" in ws.log_text() and "recursive = true" in ws.log_text()


def test_hostile_names_are_rejected_logged_and_left_in_place(ws_sqlite: Workspace, ftp_server):
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    raw = os.fsencode(folder)
    hostile = [b"new\nline.log", b"cr\r\nlf.log", b"latin1-\xe9.log", b"tab\there.log"]
    for name in hostile:
        with open(os.path.join(raw, name), "wb") as f:
            f.write(sample_log(len(name)))
    (folder / "good.log").write_bytes(sample_log(1))
    use_ftp(ws, ftp_server, path, after_ingest="delete")
    result = ws.run("ftp-sync")
    assert result.code == 1, "rejected items make the run exit 1"
    assert ws.rows("SELECT item FROM receipts") == [("good.log",)]
    assert sorted(os.listdir(raw)) == sorted(hostile), "hostile items stay for a person"
    assert ws.rows("SELECT COUNT(*) FROM source_items WHERE status = 'rejected'")[0][0] >= 3
    assert "hostile name" in ws.log_text()
    stored = [p for p in ws.store.rglob("*") if p.is_file()]
    assert all(p.suffix == ".gz" and len(p.stem) == 32 for p in stored)
    again = ws.run("ftp-sync")
    assert again.code == 0, "known rejections are not reported again"


def test_growing_file_is_filed_only_once_it_stops_changing(ws_sqlite: Workspace, ftp_server):
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    use_ftp(ws, ftp_server, path, settle_seconds="3600")
    growing = folder / "run-3-benchmark.log"
    growing.write_bytes(sample_log(3, 30_000)[:10_000])
    assert ws.run("ftp-sync").code == 0
    with growing.open("ab") as f:
        f.write(sample_log(3, 30_000)[10_000:])
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 0, "changed since the last poll: not settled"
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT md5, size FROM files") == [(md5(sample_log(3, 30_000)), 30_000)]
    assert "waiting item=run-3-benchmark.log" in ws.log_text()


def test_a_file_old_by_the_server_clock_is_filed_on_first_sight(ws_sqlite: Workspace, ftp_server):
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    old, fresh = folder / "old.log", folder / "fresh.log"
    old.write_bytes(sample_log(1))
    fresh.write_bytes(sample_log(2))
    os.utime(old, (time.time() - 600, time.time() - 600))
    use_ftp(ws, ftp_server, path, settle_seconds="120")
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT item FROM receipts") == [("old.log",)]
    assert sorted(os.listdir(folder)) == ["fresh.log", "old.log"], "the clock probe is removed"


def test_wrong_password_exits_3_with_one_clear_line_and_no_password(
    ws_sqlite: Workspace, ftps_server
):
    ws = ws_sqlite  # FTPS only: pyftpdlib delays a failed login by 3 s
    _, path = remote_folder(ftps_server)
    use_ftp(ws, ftps_server, path)
    wrong = "hunter2-not-the-password"
    (ws.root / "ftp.password").write_text(wrong)
    result = ws.run("ftp-sync")
    assert result.code == 3
    errors = [line for line in result.err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "login refused for ftpuser" in errors[0], result.err
    assert wrong not in ws.log_text() + result.err + result.out


def test_certificate_from_another_ca_exits_3(ws_sqlite: Workspace, ftps_server, tmp_path):
    ws = ws_sqlite
    _, path = remote_folder(ftps_server)
    other_ca, _ = make_tls_cert(tmp_path / "other-ca")
    use_ftp(ws, ftps_server, path, tls_ca=str(other_ca))
    result = ws.run("ftp-sync")
    assert result.code == 3
    assert "TLS certificate not trusted" in result.err and "Traceback" not in result.err
    use_ftp(ws, ftps_server, path, tls_ca=str(other_ca), tls_verify="false")
    insecure = ws.run("ftp-sync")
    assert insecure.code == 0, insecure.err
    assert "is NOT verified (tls_verify = false)" in ws.log_text()


def test_refused_port_exits_3(ws_sqlite: Workspace, ftp_server) -> None:
    ws = ws_sqlite
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use_ftp(ws, ftp_server, "q", tls=False, source=f"ftp://ftpuser@127.0.0.1:{port}/q")
    result = ws.run("ftp-sync")
    assert result.code == 3
    assert f"127.0.0.1:{port}/q: cannot connect: connection refused" in result.err


def test_password_from_netrc(ws_sqlite: Workspace, ftp_server, tmp_path) -> None:
    ws = ws_sqlite
    folder, path = remote_folder(ftp_server)
    (folder / "a.log").write_bytes(sample_log(5))
    use_ftp(ws, ftp_server, path)
    ws.sections["ftp"].pop("password_file")
    ws.configure()
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login ftpuser password {ftp_server.password}\n")
    netrc.chmod(0o600)
    assert ws.run("ftp-sync", env={"HOME": str(home)}).code == 0
    assert ws.count("files") == 1


def test_vsftpd_without_mlsd_is_listed_with_list(ws: Workspace, vsftpd_server) -> None:
    folder, path = remote_folder(vsftpd_server)
    raw = os.fsencode(folder)
    for i in range(3):
        (folder / f"run-{i}.log").write_bytes(sample_log(i))
    with open(os.path.join(raw, b"bad-\xff.log"), "wb") as f:
        f.write(b"x" * 100)
    os.symlink("run-0.log", folder / "link.log")
    (folder / "with space.log").write_bytes(sample_log(40))
    use_ftp(ws, vsftpd_server, path, tls=False, settle_seconds="3600")
    old = time.time() - 7200
    for i in range(3):
        os.utime(folder / f"run-{i}.log", (old, old))
    result = ws.run("ftp-sync")
    assert result.code == 1, "the symlink and the non-UTF-8 name are rejected"
    items = sorted(r[0] for r in ws.rows("SELECT item FROM receipts"))
    assert items == ["run-0.log", "run-1.log", "run-2.log"], "old ones settle by server clock"
    log = ws.log_text()
    assert log.count("has no MLSD (RFC 3659): listing with LIST") == 1
    assert "item=link.log size=" in log and "symlink: not followed" in log
    assert "not valid UTF-8" in log
    assert 'waiting item="with space.log"' in log
    assert ws.run("ftp-sync").code == 0
    assert "with space.log" in {r[0] for r in ws.rows("SELECT item FROM receipts")}


def test_server_killed_mid_transfer_exits_3_and_the_next_run_files_it_once(
    ws_sqlite: Workspace, tmp_path: Path
) -> None:
    ws = ws_sqlite
    home = tmp_path / "ftphome"
    (home / "q").mkdir(parents=True)
    big = os.urandom(1 << 20) * 150  # 150 MiB, incompressible blocks
    (home / "q" / "big.log").write_bytes(big)
    (home / "q" / "small.log").write_bytes(sample_log(1))
    try:
        server = start_ftp_subprocess(home)
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        use_ftp(ws, server, "q", after_ingest="delete")
        ws.configure(limits={"max_file_bytes": "1 GiB"})
        proc = subprocess.Popen(
            [sys.executable, str(BIN / "benchsync"), "ftp-sync", "--config", str(ws.config)],
            env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any((ws.store / "tmp").glob("*")):
            time.sleep(0.005)  # the big file spills to a temp file once it is streaming
        server.kill()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "big.log" not in {r[0] for r in ws.rows("SELECT item FROM receipts")}
        assert (home / "q" / "big.log").exists(), "a cut item is not deleted"
    finally:
        server.stop()
    server = start_ftp_subprocess(home)
    try:
        use_ftp(ws, server, "q", after_ingest="delete")
        again = ws.run("ftp-sync")
        assert again.code == 0, again.err
    finally:
        server.stop()
    assert ws.rows("SELECT size FROM files WHERE md5 = ?", (md5(big),)) == [(len(big),)]
    assert ws.rows("SELECT COUNT(*) FROM receipts WHERE item = 'big.log'") == [(1,)]
    assert os.listdir(home / "q") == []
    assert list((ws.store / "tmp").iterdir()) == []
