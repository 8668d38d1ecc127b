"""scp_sync against a real OpenSSH sshd: files dropped with scp/sftp are filed exactly once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import Workspace, md5, sample_log, stored_bytes

SUMMARY = re.compile(
    r" scp_sync\[\d+\] INFO run=\d+ done (seen=.*) seconds=[\d.]+ status=(\w+)$", re.M
)


def drop_folder(srv) -> Path:
    """A fresh folder on the session's sshd, so tests never see each other's files."""
    folder = srv.home / f"drop-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def use_sftp(ws: Workspace, srv, folder: Path, **keys: str) -> str:
    """Point `[scp]` at `folder` on `srv`, pinned and key-authenticated; return the URL."""
    url = f"sftp://{srv.user}@{srv.host}:{srv.port}{folder}"
    ws.configure(
        scp={
            "source": url,
            "key_file": str(srv.client_key),
            "known_hosts": str(srv.known_hosts_file),
            "settle_seconds": "0",
            "after_ingest": "keep",
            **keys,
        }
    )
    return url


def last_summary(ws: Workspace) -> tuple[str, str]:
    return SUMMARY.findall(ws.log_text("scp_sync"))[-1]


def ssh_opts(srv) -> list[str]:
    return [
        "-i",
        str(srv.client_key),
        "-o",
        f"UserKnownHostsFile={srv.known_hosts_file}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]


def fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]  # SHA256:...


def test_logs_dropped_with_scp_are_filed_once_with_scp_receipts(
    ws: Workspace, sftp_server, tmp_path: Path
) -> None:
    folder = drop_folder(sftp_server)
    url = use_sftp(ws, sftp_server, folder)
    local = []
    for i in range(3):
        p = tmp_path / f"run-{i}-benchmark.log"
        p.write_bytes(sample_log(i, 30_000))
        local.append(str(p))
    dest = f"{sftp_server.user}@{sftp_server.host}:{folder}/"
    scp = ["scp", "-q", "-P", str(sftp_server.port), *ssh_opts(sftp_server), *local, dest]
    subprocess.run(scp, check=True, capture_output=True, timeout=30)

    result = ws.run("scp-sync")
    assert result.code == 0, result.err
    assert result.out == "" and result.err == "", "a sync job prints nothing on success"
    rows = ws.rows("SELECT channel, source, item, original_name, meta FROM receipts ORDER BY item")
    assert [r[:4] for r in rows] == [
        ("scp", url, f"run-{i}-benchmark.log", f"run-{i}-benchmark.log") for i in range(3)
    ]
    assert json.loads(rows[0][4]) == {"remote_path": f"{folder}/run-0-benchmark.log"}
    for i in range(3):
        assert stored_bytes(ws.store, md5(sample_log(i, 30_000))) == sample_log(i, 30_000)
    assert last_summary(ws) == ("seen=3 new=3 dup=0 failed=0 skipped=0", "ok")

    assert ws.run("scp-sync").code == 0
    assert last_summary(ws) == ("seen=3 new=0 dup=0 failed=0 skipped=0", "ok")
    assert ws.count("receipts") == 3
    assert sorted(os.listdir(folder)) == [Path(p).name for p in local], "keep leaves them"


def test_files_put_with_sftp_batch_mode_in_user_folders_name_their_submitter(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder, recursive="true", submitter_from_path="true")
    (tmp_path / "a.log").write_bytes(sample_log(1))
    batch = tmp_path / "batch"
    batch.write_text(f"mkdir {folder}/alice\nput {tmp_path}/a.log {folder}/alice/run.log\n")
    sftp = ["sftp", "-q", "-b", str(batch), "-P", str(sftp_server.port), *ssh_opts(sftp_server)]
    subprocess.run([*sftp, f"{sftp_server.user}@{sftp_server.host}"], check=True, timeout=30)
    assert ws.run("scp-sync").code == 0
    assert ws.rows("SELECT item, submitter FROM receipts") == [("alice/run.log", "alice")]


def test_unknown_host_key_is_refused_with_its_fingerprint_and_nothing_is_fetched(
    ws_sqlite: Workspace, sftp_server
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    (folder / "a.log").write_bytes(sample_log(1))
    empty = ws.root / "known_hosts"
    empty.write_text("")
    use_sftp(ws, sftp_server, folder, known_hosts=str(empty))
    result = ws.run("scp-sync")
    assert result.code == 3
    assert f"[127.0.0.1]:{sftp_server.port}" in result.err
    assert fingerprint(sftp_server.host_pub) in result.err
    assert "Traceback" not in result.err and result.err.count("\n") == 1
    assert ws.count("files") == 0 and ws.count("source_items") == 0
    assert empty.read_text() == "", "nothing is added without accept_new_host_key"


def test_accepting_a_new_host_key_is_explicit_logged_and_saved(
    ws_sqlite: Workspace, sftp_server
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    (folder / "a.log").write_bytes(sample_log(1))
    known = ws.root / "ssh" / "known_hosts"
    use_sftp(ws, sftp_server, folder, known_hosts=str(known), accept_new_host_key="true")
    result = ws.run("scp-sync")
    assert result.code == 0, result.err
    assert fingerprint(sftp_server.host_pub) in ws.log_text("scp_sync")
    assert "accepted new host key" in result.err, "a warning: cron mails it"
    assert known.read_text().split() == sftp_server.known_hosts_file.read_text().split()
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    ws.configure(scp={"accept_new_host_key": "false"})
    assert ws.run("scp-sync").code == 0, "the saved key is trusted from now on"
    assert ws.count("receipts") == 1


def test_changed_host_key_is_refused_even_with_accept_new(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    (folder / "a.log").write_bytes(sample_log(1))
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = ws.root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sftp_server.port} " + other.with_suffix(".pub").read_text())
    use_sftp(ws, sftp_server, folder, known_hosts=str(known), accept_new_host_key="true")
    result = ws.run("scp-sync")
    assert result.code == 3
    assert "CHANGED" in result.err
    assert fingerprint(sftp_server.host_pub) in result.err
    assert fingerprint(other.with_suffix(".pub")) in result.err
    assert ws.count("files") == 0


def test_a_key_the_server_does_not_know_is_exit_3(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    (folder / "a.log").write_bytes(sample_log(1))
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    use_sftp(ws, sftp_server, folder, key_file=str(stranger))
    result = ws.run("scp-sync")
    assert result.code == 3
    assert "refused key_file" in result.err and "Traceback" not in result.err
    assert ws.count("files") == 0


@pytest.mark.parametrize("ktype", ["ed25519", "ecdsa", "rsa"])
def test_encrypted_keys_of_each_type_log_in_with_their_passphrase_file(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path, ktype: str
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    (folder / "a.log").write_bytes(sample_log(1))
    key = tmp_path / f"id_{ktype}"
    bits = ["-b", "2048"] if ktype == "rsa" else []
    keygen = ["ssh-keygen", "-q", "-t", ktype, *bits, "-N", "s3cret-phrase", "-f", str(key)]
    subprocess.run(keygen, check=True)
    with open(sftp_server.dir / "authorized_keys", "a") as f:
        f.write(key.with_suffix(".pub").read_text())
    phrase = ws.root / "passphrase"
    phrase.write_text("s3cret-phrase\n")
    phrase.chmod(0o600)
    use_sftp(ws, sftp_server, folder, key_file=str(key), passphrase_file=str(phrase))
    result = ws.run("scp-sync")
    assert result.code == 0, result.err
    assert ws.count("receipts") == 1
    assert "s3cret-phrase" not in ws.log_text("scp_sync")


def test_passphrase_file_readable_by_others_is_exit_2(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    ws = ws_sqlite
    phrase = ws.root / "passphrase"
    phrase.write_text("s3cret-phrase")
    phrase.chmod(0o644)
    use_sftp(ws, sftp_server, drop_folder(sftp_server), passphrase_file=str(phrase))
    result = ws.run("scp-sync")
    assert result.code == 2
    assert "chmod 600" in result.err and "s3cret-phrase" not in result.err


def test_encrypted_key_without_passphrase_file_is_exit_2(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(key)], check=True)
    use_sftp(ws_sqlite, sftp_server, drop_folder(sftp_server), key_file=str(key))
    result = ws_sqlite.run("scp-sync")
    assert result.code == 2 and "set passphrase_file" in result.err


def test_password_in_the_url_is_refused(ws_sqlite: Workspace, sftp_server) -> None:
    url = f"sftp://root:hunter2@127.0.0.1:{sftp_server.port}/tmp"
    use_sftp(ws_sqlite, sftp_server, drop_folder(sftp_server))
    ws_sqlite.configure(scp={"source": url})
    result = ws_sqlite.run("scp-sync")
    assert result.code == 2 and "password_file" in result.err and "hunter2" not in result.err


def test_missing_remote_folder_is_exit_3(ws_sqlite: Workspace, sftp_server) -> None:
    use_sftp(ws_sqlite, sftp_server, sftp_server.home / "no-such-folder")
    result = ws_sqlite.run("scp-sync")
    assert result.code == 3 and "no-such-folder" in result.err


@pytest.mark.parametrize("action", ["delete", "move:done"])
def test_after_ingest_removes_remote_files_only_once_filed(
    ws_sqlite: Workspace, sftp_server, action: str
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder, after_ingest=action)
    for i in range(4):
        (folder / f"{i}.log").write_bytes(sample_log(i))
    (folder / "x.log.part").write_bytes(sample_log(9))
    assert ws.run("scp-sync").code == 0
    if action == "delete":
        assert sorted(os.listdir(folder)) == ["x.log.part"]
    else:
        assert sorted(os.listdir(folder)) == ["done", "x.log.part"]
        assert sorted(os.listdir(folder / "done")) == [f"{i}.log" for i in range(4)]
    assert ws.rows("SELECT DISTINCT status FROM source_items") == [("filed",)]
    again = folder / "0.log"
    again.write_bytes(sample_log(0))  # the same content dropped again, a second later
    os.utime(again, (again.stat().st_atime + 5, again.stat().st_mtime + 5))
    assert ws.run("scp-sync").code == 0
    assert ws.count("files") == 4 and ws.count("receipts") == 4
    if action != "delete":
        moved = sorted(os.listdir(folder / "done"))
        assert moved == ["0.log", "0.log.1", "1.log", "2.log", "3.log"], "never overwritten"


def test_unsettled_remote_file_waits_until_old_enough(ws_sqlite: Workspace, sftp_server) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder, settle_seconds="600")
    f = folder / "fresh.log"
    f.write_bytes(sample_log(1))
    assert ws.run("scp-sync").code == 0
    assert ws.count("files") == 0 and "waiting item=fresh.log" in ws.log_text("scp_sync")
    st = f.stat()
    os.utime(f, (st.st_atime - 3600, st.st_mtime - 3600))
    assert ws.run("scp-sync").code == 0
    assert ws.rows("SELECT md5 FROM files") == [(md5(sample_log(1)),)]


def test_ssh_agent_logs_in_when_use_agent_is_set(
    ws_sqlite: Workspace, sftp_server, tmp_path: Path
) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    (folder / "a.log").write_bytes(sample_log(1))
    use_sftp(ws, sftp_server, folder, use_agent="true")
    del ws.sections["scp"]["key_file"]
    ws.configure()
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sftp_server.client_key)], env=env, check=True)
        result = ws.run("scp-sync", env=env)
    finally:
        agent.terminate()
        agent.wait(5)
    assert result.code == 0, result.err
    assert ws.count("receipts") == 1


def test_no_key_and_no_agent_is_a_config_error(ws_sqlite: Workspace, sftp_server) -> None:
    use_sftp(ws_sqlite, sftp_server, drop_folder(sftp_server))
    del ws_sqlite.sections["scp"]["key_file"]
    ws_sqlite.configure()
    result = ws_sqlite.run("scp-sync")
    assert result.code == 2 and "set key_file" in result.err
