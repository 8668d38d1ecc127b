"""Smoke tests for the real-server fixtures: each server is reached with the real client library
and shows the behaviour the sync code relies on (TLS verification, MOVE, MLSD, host key pinning)."""

from __future__ import annotations

import email
import email.policy
import ftplib
import io
import os
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import paramiko
import psycopg2
import pytest
from imapclient import IMAPClient

from server_fixtures import require_or_skip
from servers.servers import (
    FtpServer,
    ImapServer,
    PgServer,
    ServerUnavailable,
    SmtpSink,
    SshServer,
    VsftpdServer,
    start_dovecot,
    start_ftp_subprocess,
    start_sshd,
)


def _mail(subject: str, attachment: bytes = b"x,y\n") -> EmailMessage:
    m = EmailMessage()
    m["From"] = "bench@example.com"
    m["To"] = "alice@example.com"
    m["Subject"] = subject
    m.set_content("see attached")
    m.add_attachment(attachment, maintype="text", subtype="csv", filename="d.csv")
    return m


# --------------------------------------------------------------------------- require_or_skip


def test_require_or_skip_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCHSYNC_REQUIRE_SERVERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no dovecot"):
        require_or_skip(ServerUnavailable("no dovecot"))


def test_require_or_skip_fails_when_ci_requires_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHSYNC_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="no dovecot"):
        require_or_skip(ServerUnavailable("no dovecot"))


# --------------------------------------------------------------------------- PostgreSQL


def test_pg_url_is_a_fresh_database_that_stores_rows(pg_url: str) -> None:
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("select current_database(), count(*) from pg_tables where schemaname='public'")
        dbname, tables = cur.fetchone()
        assert dbname != "postgres" and tables == 0
        cur.execute("create table files(name text primary key, body bytea)")
        cur.execute("insert into files values (%s, %s)", ("a.csv", b"1,2"))
        cur.execute("select body from files")
        assert cur.fetchone()[0].tobytes() == b"1,2"
    conn.close()


def test_pg_drop_database_works_with_open_connections(pg_server: PgServer) -> None:
    url = pg_server.create_database("t_drop_me")
    conn = psycopg2.connect(url)
    try:
        pg_server.drop_database("t_drop_me")
        with pg_server.connect() as admin, admin.cursor() as cur:
            cur.execute("select count(*) from pg_database where datname = 't_drop_me'")
            assert cur.fetchone()[0] == 0
        admin.close()
    finally:
        conn.close()


def test_pg_kill_hard_breaks_connections_and_restart_brings_data_back(
    pg_server: PgServer, pg_url: str
) -> None:
    if pg_server.external:
        pytest.skip("kill_hard needs a cluster started by the tests")
    conn = psycopg2.connect(pg_url)
    with conn.cursor() as cur:
        cur.execute("create table t(x int); insert into t values (42)")
    conn.commit()
    pg_server.kill_hard()
    assert pg_server.pid is None
    with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
        cur.execute("select 1")
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(pg_url, connect_timeout=2)
    pg_server.restart()
    with psycopg2.connect(pg_url) as conn2, conn2.cursor() as cur:
        cur.execute("select x from t")
        assert cur.fetchall() == [(42,)]
    conn2.close()


# --------------------------------------------------------------------------- IMAP


def test_imap_starttls_and_imaps_verify_cert_and_fetch_attachment(imap_server: ImapServer) -> None:
    imap_server.deliver(_mail("daily-smoke"))
    ctx = imap_server.ssl_context()
    for port, use_ssl in ((imap_server.port, False), (imap_server.ssl_port, True)):
        with IMAPClient(imap_server.host, port=port, ssl=use_ssl, ssl_context=ctx, timeout=10) as c:
            if not use_ssl:
                c.starttls(ctx)
            c.login(imap_server.user, imap_server.password)
            c.select_folder("INBOX")
            uids = c.search(["SUBJECT", "daily-smoke"])
            assert len(uids) == 1
            raw = c.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            parts = [(p.get_filename(), p.get_content()) for p in msg.iter_attachments()]
            assert parts == [("d.csv", "x,y\n")]


def test_imap_default_context_rejects_self_signed_cert(imap_server: ImapServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(imap_server.host, port=imap_server.ssl_port, ssl=True, timeout=10)


def test_imap_create_folder_move_and_lda(imap_server: ImapServer) -> None:
    imap_server.lda(_mail("via-lda"))
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=10) as c:
        c.starttls(imap_server.ssl_context())
        c.login(imap_server.user, imap_server.password)
        assert c.has_capability("MOVE") and c.has_capability("UIDPLUS")
        c.create_folder("Processed")
        c.select_folder("INBOX")
        uids = c.search(["SUBJECT", "via-lda"])
        assert len(uids) == 1
        c.move(uids, "Processed")
        assert c.search(["SUBJECT", "via-lda"]) == []
        c.select_folder("Processed", readonly=True)
        assert len(c.search(["SUBJECT", "via-lda"])) == 1
    moved = imap_server.folder_path("Processed")
    assert [*(moved / "cur").iterdir(), *(moved / "new").iterdir()]


def test_imap_kill_drops_sessions_and_leaves_no_process() -> None:
    try:
        srv = start_dovecot()
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        pid = srv.pid
        assert pid is not None
        c = IMAPClient(srv.host, port=srv.port, ssl=False, timeout=5)
        c.login(srv.user, srv.password)
        srv.kill()
        assert not Path(f"/proc/{pid}").exists() or srv.pid is None
        with pytest.raises((OSError, IMAPClient.Error, IMAPClient.AbortError)):
            c.select_folder("INBOX")
    finally:
        srv.stop()


# --------------------------------------------------------------------------- SFTP


def _ssh(srv: SshServer, host_keys_file: Path | None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if host_keys_file is not None:
        client.load_host_keys(str(host_keys_file))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        srv.host,
        port=srv.port,
        username=srv.user,
        key_filename=str(srv.client_key),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    return client


def test_sftp_with_pinned_host_key_lists_gets_puts_renames(sftp_server: SshServer) -> None:
    (sftp_server.home / "outbox" / "f.csv").write_text("hello")
    client = _ssh(sftp_server, sftp_server.known_hosts_file)
    try:
        sftp = client.open_sftp()
        assert "f.csv" in sftp.listdir("outbox")
        buf = io.BytesIO()
        sftp.getfo("outbox/f.csv", buf)
        assert buf.getvalue() == b"hello"
        sftp.putfo(io.BytesIO(b"up"), "outbox/up.tmp")
        sftp.posix_rename("outbox/up.tmp", "outbox/up.csv")
        assert (sftp_server.home / "outbox" / "up.csv").read_bytes() == b"up"
    finally:
        client.close()


def test_sftp_unknown_host_key_is_rejected(sftp_server: SshServer) -> None:
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _ssh(sftp_server, None)


def test_sshd_serves_a_given_home_and_kill_drops_the_session(tmp_path: Path) -> None:
    try:
        srv = start_sshd(home=tmp_path)
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        client = _ssh(srv, srv.known_hosts_file)
        sftp = client.open_sftp()
        sftp.putfo(io.BytesIO(b"abc"), "x.bin")
        assert (tmp_path / "x.bin").read_bytes() == b"abc"
        srv.kill()
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            sftp.listdir(".")
        client.close()
    finally:
        srv.stop()
    assert tmp_path.is_dir()  # a caller-given home survives stop()


# --------------------------------------------------------------------------- FTP / FTPS


def test_ftp_mlsd_retr_stor_rename(ftp_server: FtpServer) -> None:
    (ftp_server.home / "in.csv").write_bytes(b"1;2")
    f = ftp_server.client()
    try:
        assert isinstance(f, ftplib.FTP_TLS) == ftp_server.tls
        entries = dict(f.mlsd("/", facts=["type", "size", "modify"]))
        assert entries["in.csv"]["size"] == "3"
        buf = io.BytesIO()
        f.retrbinary("RETR in.csv", buf.write)
        assert buf.getvalue() == b"1;2"
        f.storbinary("STOR up.tmp", io.BytesIO(b"new"))
        f.rename("up.tmp", "up.csv")
        assert (ftp_server.home / "up.csv").read_bytes() == b"new"
        f.delete("up.csv")
    finally:
        f.quit()


def test_ftps_refuses_plaintext_login(ftps_server: FtpServer) -> None:
    f = ftplib.FTP()
    f.connect(ftps_server.host, ftps_server.port, timeout=10)
    try:
        with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
            f.login(ftps_server.user, ftps_server.password)
    finally:
        f.close()


def test_ftp_subprocess_sigkill_breaks_a_transfer(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(8 << 20))
    srv = start_ftp_subprocess(tmp_path)
    try:
        f = srv.client()
        conn = f.transfercmd("RETR big.bin")
        assert conn.recv(1024)
        srv.kill()
        with pytest.raises((OSError, EOFError, ftplib.Error)):
            while conn.recv(1 << 16):
                pass
            f.voidresp()  # data ended without "226": the control connection is gone
        conn.close()
        assert srv.proc.returncode == -9
    finally:
        srv.stop()


def test_vsftpd_lists_without_mlsd_and_does_ftps(vsftpd_server: VsftpdServer) -> None:
    (vsftpd_server.home / "outbox" / "v.csv").write_text("v")
    for tls in (False, True):
        f = vsftpd_server.client(tls=tls)
        try:
            assert f.nlst("outbox") == ["outbox/v.csv"]
            with pytest.raises(ftplib.error_perm, match="500"):
                list(f.mlsd("outbox"))
            buf = io.BytesIO()
            f.retrbinary("RETR outbox/v.csv", buf.write)
            assert buf.getvalue() == b"v"
        finally:
            f.quit()


# --------------------------------------------------------------------------- SMTP


def test_smtp_sink_collects_plain_message(smtp_sink: SmtpSink) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "sync@example.com", "ops@example.com", "report"
    m.set_content("ok")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as s:
        s.send_message(m)
    env = smtp_sink.messages[-1]
    assert env.rcpt_tos == ["ops@example.com"] and b"Subject: report" in env.content


def test_smtp_starttls_login_and_wrong_password(smtp_tls_sink: SmtpSink) -> None:
    ctx = smtp_tls_sink.ssl_context()
    with smtplib.SMTP(smtp_tls_sink.host, smtp_tls_sink.port, timeout=10) as s:
        s.starttls(context=ctx)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(smtp_tls_sink.user, "wrong")
    with smtplib.SMTP(smtp_tls_sink.host, smtp_tls_sink.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.login(smtp_tls_sink.user, smtp_tls_sink.password)  # no AUTH before STARTTLS
    with smtplib.SMTP(smtp_tls_sink.host, smtp_tls_sink.port, timeout=10) as s:
        s.starttls(context=ctx)
        s.login(smtp_tls_sink.user, smtp_tls_sink.password)
        s.sendmail("sync@example.com", ["ops@example.com"], b"Subject: tls\r\n\r\nok\r\n")
    assert smtp_tls_sink.messages[-1].content.startswith(b"Subject: tls")


def test_smtps_implicit_tls(smtps_sink: SmtpSink) -> None:
    with smtplib.SMTP_SSL(
        smtps_sink.host, smtps_sink.port, context=smtps_sink.ssl_context(), timeout=10
    ) as s:
        s.login(smtps_sink.user, smtps_sink.password)
        s.sendmail("sync@example.com", ["ops@example.com"], b"Subject: smtps\r\n\r\nok\r\n")
    assert smtps_sink.messages[-1].content.startswith(b"Subject: smtps")
