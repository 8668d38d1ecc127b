"""imap_sync against a real Dovecot: what is filed, receipts, acks, watermark, TLS, faults.

Mails are built with the `email` package the way clients send them and APPENDed over
IMAP (UIDs then follow the order of the list), or dropped into the Maildir.
"""

from __future__ import annotations

import bz2
import email.policy
import gzip
import io
import json
import lzma
import selectors
import socket
import subprocess
import tarfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from benchsync.sources.base import AfterIngest
from benchsync.sources.imap import ImapSettings, ImapSource
from conftest import Workspace, md5, stored_bytes
from samples_path import samples_dir
from server_fixtures import require_or_skip
from servers.servers import ImapServer, ServerUnavailable, start_dovecot

SAMPLES = samples_dir()
LOGS = sorted(p for p in SAMPLES.iterdir() if p.suffix == ".log" or p.name.endswith("summary"))
RUN_LOG = SAMPLES / "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"


# -- helpers --------------------------------------------------------------------------------
def wire(msg: EmailMessage) -> bytes:
    """CRLF line ends, as on the wire (RFC 5322 2.1)."""
    return msg.as_bytes(policy=email.policy.SMTP)


def mail(subject: str, body: str = "My benchmark run is attached.", n: int = 1) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Tester {n} <tester{n}@example.org>"
    m["To"] = "benchmarks@example.org"
    m["Subject"] = subject
    m["Date"] = "Fri, 04 Dec 2026 19:30:00 +0000"
    m["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    m.set_content(body)
    return m


def with_log(subject: str, path: Path, n: int = 1, data: bytes | None = None) -> EmailMessage:
    m = mail(subject, n=n)
    m.add_attachment(
        path.read_bytes() if data is None else data,
        maintype="text",
        subtype="plain",
        filename=path.name,
    )
    return m


def new_folder() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@contextmanager
def imap(srv: ImapServer, folder: str) -> Iterator[IMAPClient]:
    """A verified IMAPS session with `folder` selected (created when missing)."""
    with IMAPClient(srv.host, port=srv.ssl_port, ssl=True, ssl_context=srv.ssl_context()) as c:
        c.login(srv.user, srv.password)
        if not c.folder_exists(folder):
            c.create_folder(folder)
        c.select_folder(folder)
        yield c


def append(srv: ImapServer, folder: str, *msgs: EmailMessage | bytes) -> None:
    """APPEND in order, so message i gets UID i in a new folder."""
    with imap(srv, folder) as c:
        for m in msgs:
            c.append(folder, m if isinstance(m, bytes) else wire(m))


def use_imap(ws: Workspace, srv: ImapServer, folder: str, port: int | None = None, **kw: str):
    pw = ws.root / "imap.password"
    pw.write_text(srv.password + "\n")
    pw.chmod(0o600)
    values = {
        "host": srv.host,
        "port": str(port or srv.ssl_port),
        "ssl": "true",
        "user": srv.user,
        "password_file": "imap.password",
        "tls_ca": str(srv.cafile),
        "folder": folder,
    }
    ws.configure(imap={**values, **kw})


def receipts(ws: Workspace) -> list[dict]:
    rows = ws.rows(
        "SELECT r.item, r.original_name, r.submitter, r.meta, f.md5, r.channel"
        " FROM receipts r JOIN files f ON f.id = r.file_id ORDER BY r.id"
    )
    out = []
    for item, name, submitter, meta, digest, channel in rows:
        meta = meta if isinstance(meta, dict) or meta is None else json.loads(meta)
        out.append(
            dict(item=item, name=name, submitter=submitter, meta=meta, md5=digest, channel=channel)
        )
    return out


def summary(ws: Workspace) -> str:
    return [line for line in ws.log_text("imap_sync").splitlines() if " done seen=" in line][-1]


@pytest.fixture
def folder(imap_server: ImapServer) -> str:
    return new_folder()


@contextmanager
def private_dovecot() -> Iterator[ImapServer]:
    """A Dovecot of this test's own, for tests that kill it or make it wary."""
    try:
        srv = start_dovecot()
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        yield srv
    finally:
        srv.stop()


# -- what is filed ----------------------------------------------------------------------------
def test_attachments_are_filed_with_sender_headers_and_uid_in_the_receipt(
    ws: Workspace, imap_server: ImapServer, folder: str
) -> None:
    m = mail("rel 7.32.6 on epyc")
    m.add_alternative("<p>My benchmark run is attached.</p>", subtype="html")
    m.add_attachment(RUN_LOG.read_bytes(), maintype="text", subtype="plain", filename=RUN_LOG.name)
    moss = SAMPLES / "ref-vgr-vax780-rel3.26-1991_moss.log"
    m.add_attachment(moss.read_bytes(), "application", "octet-stream", filename=moss.name)
    m.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(100), "image", "png", filename="shot.png")
    append(imap_server, folder, m)
    use_imap(ws, imap_server, folder)

    result = ws.run("imap-sync")
    assert (result.code, result.out, result.err) == (0, "", "")
    got = receipts(ws)
    assert [(r["name"], r["md5"]) for r in got] == [
        (RUN_LOG.name, md5(RUN_LOG.read_bytes())),
        (moss.name, md5(moss.read_bytes())),
    ]
    assert stored_bytes(ws.store, got[0]["md5"]) == RUN_LOG.read_bytes()
    r = got[0]
    assert (r["channel"], r["submitter"]) == ("imap", "tester1@example.org")
    assert r["item"].endswith(":1") and r["meta"]["uid"] == 1
    assert r["meta"]["subject"] == "rel 7.32.6 on epyc"
    assert r["meta"]["message_id"] == m["Message-ID"]
    assert r["meta"]["date"] == "Fri, 04 Dec 2026 19:30:00 +0000"
    assert ws.count("files") == 2

    again = ws.run("imap-sync")
    assert again.code == 0
    assert " seen=0 new=0 " in summary(ws), "the watermark: nothing is listed twice"


def test_starttls_on_the_plain_port_files_the_logs(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    append(imap_server, folder, with_log("one", LOGS[0]))
    use_imap(ws_sqlite, imap_server, folder, port=imap_server.port, ssl="false")
    result = ws_sqlite.run("imap-sync")
    assert result.code == 0, result.err
    assert [r["name"] for r in receipts(ws_sqlite)] == [LOGS[0].name]


def test_an_unverifiable_certificate_is_exit_3_unless_verification_is_turned_off(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    append(imap_server, folder, with_log("one", LOGS[0]))
    use_imap(ws, imap_server, folder, tls_ca="")
    result = ws.run("imap-sync")
    assert result.code == 3
    assert "certificate verify failed" in result.err and "Traceback" not in result.err
    assert ws.count("receipts") == 0

    use_imap(ws, imap_server, folder, tls_ca="", tls_verify="false")
    result = ws.run("imap-sync")
    assert result.code == 0
    assert "TLS certificate verification is off (tls_verify = false)" in ws.log_text("imap_sync")
    assert ws.count("receipts") == 1


def test_a_pasted_log_is_filed_and_a_chatty_mail_is_filed_as_nothing_once(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    log_text = RUN_LOG.read_text()
    pasted = mail("my results")
    pasted.set_content(
        f"Grüße – here it is:\n\n{log_text}\n-- \nTester\n",
        charset="windows-1252",
        cte="quoted-printable",
    )
    chatty = mail("thanks!", "Great tool, no logs from me yet.")
    append(imap_server, folder, pasted, chatty)
    use_imap(ws, imap_server, folder)

    assert ws.run("imap-sync").code == 0
    (r,) = receipts(ws)
    assert r["name"] == "body.txt" and r["meta"]["pasted"] is True
    assert log_text in stored_bytes(ws.store, r["md5"]).decode("utf-8")
    nothing = ws.rows("SELECT item, status, reason FROM source_items WHERE item LIKE '%:2'")
    assert nothing == [(nothing[0][0], "filed", "nothing to file")]
    assert "no log in item=" in ws.log_text("imap_sync")
    assert ws.run("imap-sync").code == 0
    assert " seen=0 " in summary(ws), "never retried"


def test_forwarded_mails_and_compressed_attachments_are_opened(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    logs = {p.name: p.read_bytes() for p in LOGS[:7]}
    names = list(logs)
    inner = with_log("my run", SAMPLES / names[0])
    forwarded = mail("Fwd: my run", "Forwarding Bob's results.", n=2)
    forwarded.add_attachment(inner)
    packed = mail("all formats", n=3)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        info = tarfile.TarInfo(f"results/{names[5]}")
        info.size = len(logs[names[5]])
        tf.addfile(info, io.BytesIO(logs[names[5]]))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"logs/{names[3]}", logs[names[3]])
        zf.writestr(names[4], logs[names[4]])
    for name, data, subtype in [
        (names[1] + ".gz", gzip.compress(logs[names[1]]), "gzip"),
        (names[2] + ".xz", lzma.compress(logs[names[2]]), "x-xz"),
        ("logs.zip", zipped.getvalue(), "zip"),
        ("results.tar.gz", tgz.getvalue(), "x-compressed-tar"),
        (names[6] + ".bz2", bz2.compress(logs[names[6]]), "x-bzip2"),
    ]:
        packed.add_attachment(data, "application", subtype, filename=name)
    append(imap_server, folder, forwarded, packed)
    use_imap(ws, imap_server, folder)

    assert ws.run("imap-sync").code == 0
    got = {r["name"]: r for r in receipts(ws)}
    assert set(got) == set(names)
    for name, data in logs.items():
        assert stored_bytes(ws.store, got[name]["md5"]) == data
    assert got[names[0]]["submitter"] == "tester2@example.org", "the forwarder is the submitter"
    assert got[names[3]]["meta"]["archive"] == "logs.zip"
    assert got[names[3]]["meta"]["member"] == f"logs/{names[3]}"


# -- acknowledgement ------------------------------------------------------------------------
def test_after_ingest_seen_flags_only_filed_messages(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    broken = (
        mail("broken")
        .as_bytes()
        .replace(b"Content-Type: text/plain", b"Content-Type: multipart/mixed")
    )
    append(imap_server, folder, with_log("a", LOGS[0]), broken, with_log("b", LOGS[1], n=2))
    use_imap(ws, imap_server, folder, after_ingest="seen")
    assert ws.run("imap-sync").code == 1
    with imap(imap_server, folder) as c:
        flags = c.get_flags([1, 2, 3])
    assert b"\\Seen" in flags[1] and b"\\Seen" in flags[3]
    assert b"\\Seen" not in flags[2], "the rejected message is left as it was"
    assert (
        "malformed MIME" in ws.rows("SELECT reason FROM source_items WHERE status='rejected'")[0][0]
    )


def test_after_ingest_move_moves_filed_mail_and_mail_without_logs_to_their_folders(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    done, nolog = f"{folder}.Filed", f"{folder}.NoLog"
    append(imap_server, folder, with_log("a", LOGS[0]), mail("hello", "just saying hi"))
    use_imap(ws, imap_server, folder, after_ingest=f"move:{done}", no_log_folder=nolog)
    assert ws.run("imap-sync").code == 0
    with imap(imap_server, folder) as c:
        assert c.search() == []
        c.select_folder(done)
        assert len(c.search()) == 1
        c.select_folder(nolog)
        assert len(c.search()) == 1
    assert ws.rows("SELECT status FROM source_items ORDER BY item") == [("filed",), ("filed",)]


def test_no_log_folder_also_works_with_keep(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    nolog = f"{folder}.NoLog"
    append(imap_server, folder, with_log("a", LOGS[0]), mail("hello", "just saying hi"))
    use_imap(ws, imap_server, folder, no_log_folder=nolog)
    assert ws.run("imap-sync").code == 0
    with imap(imap_server, folder) as c:
        assert c.search() == [1]
        c.select_folder(nolog)
        assert len(c.search()) == 1


def test_dry_run_files_nothing_and_leaves_flags_and_watermark(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    append(imap_server, folder, with_log("a", LOGS[0]))
    use_imap(ws, imap_server, folder, after_ingest="seen")
    assert ws.run("imap-sync", "--dry-run").code == 0
    assert "would file item=" in ws.log_text("imap_sync")
    assert ws.count("receipts") == 0
    assert ws.rows("SELECT value FROM source_state WHERE key = 'watermark'") == []
    with imap(imap_server, folder) as c:
        assert c.get_flags([1])[1] == ()
    assert ws.run("imap-sync").code == 0
    assert ws.count("receipts") == 1


# -- watermark ----------------------------------------------------------------------------------
def test_a_uidvalidity_change_rescans_with_a_warning_and_files_nothing_twice(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    append(imap_server, folder, with_log("a", LOGS[0]), with_log("b", LOGS[1], n=2))
    use_imap(ws, imap_server, folder)
    assert ws.run("imap-sync").code == 0
    (mark,) = ws.rows("SELECT value FROM source_state WHERE key = 'watermark'")
    assert mark[0].endswith(":2")
    res = subprocess.run(
        ["doveadm", "-c", str(imap_server.conf), "mailbox", "update", "-u", imap_server.user,
         "--uid-validity", "4242", folder],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert ws.run("imap-sync").code == 0
    log = ws.log_text("imap_sync")
    assert " WARNING imap " in log and "UIDVALIDITY changed from" in log and "to 4242" in log
    assert " seen=2 new=0 dup=2 " in summary(ws)
    assert ws.count("files") == 2
    assert ws.rows("SELECT value FROM source_state WHERE key = 'watermark'") == [("4242:2",)]


def test_only_mail_above_the_watermark_is_listed(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    ws = ws_sqlite
    append(imap_server, folder, with_log("a", LOGS[0]))
    use_imap(ws, imap_server, folder)
    assert ws.run("imap-sync").code == 0
    append(imap_server, folder, with_log("b", LOGS[1]), with_log("c", LOGS[2]))
    assert ws.run("imap-sync").code == 0
    assert " seen=2 new=2 " in summary(ws)
    assert ws.rows("SELECT value FROM source_state WHERE key = 'watermark'")[0][0].endswith(":3")


# -- secrets and configuration -----------------------------------------------------------------
def test_the_password_never_reaches_the_run_log(ws_sqlite: Workspace) -> None:
    """A private server: Dovecot delays later logins from an IP that failed one."""
    ws = ws_sqlite
    with private_dovecot() as srv:
        append(srv, "INBOX", with_log("a", LOGS[0]))
        use_imap(ws, srv, "INBOX")
        assert ws.run("imap-sync", "-vv").code == 0
        (ws.root / "imap.password").write_text("hunter2-wrong\n")
        wrong = ws.run("imap-sync", "-vv")
    assert wrong.code == 3
    assert "IMAP login as alice refused" in wrong.err
    text = ws.log_text("imap_sync") + wrong.err + wrong.out
    assert srv.password not in text and "hunter2" not in text


def test_a_password_file_readable_by_others_is_exit_2(
    ws_sqlite: Workspace, imap_server: ImapServer, folder: str
) -> None:
    use_imap(ws_sqlite, imap_server, folder)
    (ws_sqlite.root / "imap.password").chmod(0o644)
    result = ws_sqlite.run("imap-sync")
    assert result.code == 2
    assert "readable by group or others" in result.err


def test_a_missing_folder_is_a_configuration_error(
    ws_sqlite: Workspace, imap_server: ImapServer
) -> None:
    use_imap(ws_sqlite, imap_server, "NoSuchFolder")
    result = ws_sqlite.run("imap-sync")
    assert result.code == 2
    assert "[imap] folder = 'NoSuchFolder' cannot be selected" in result.err


# -- batching, in-process against the real server ---------------------------------------------
class DictState:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)


def source_for(srv: ImapServer, folder: str, **kw) -> ImapSource:
    settings = ImapSettings(
        host=srv.host,
        port=srv.ssl_port,
        ssl=True,
        starttls=False,
        user=srv.user,
        password=srv.password,
        folder=folder,
        tls_ca=srv.cafile,
        **kw,
    )
    src = ImapSource(settings)
    src.state = DictState()
    return src


def test_messages_are_fetched_many_per_uid_fetch_and_a_large_one_alone(
    imap_server: ImapServer, folder: str
) -> None:
    small = [with_log(f"s{i}", LOGS[i % len(LOGS)]) for i in range(16)]
    big = with_log("big", RUN_LOG, data=b"x" * (3 << 20))
    append(imap_server, folder, *small[:12], big, *small[12:])
    src = source_for(imap_server, folder, fetch_batch=100, fetch_batch_bytes=1 << 20)
    calls: list[list[int]] = []
    with src:
        real = src._client.fetch

        def counting(uids, data, *a, **k):
            if "BODY.PEEK[]" in data:
                calls.append(list(uids))
            return real(uids, data, *a, **k)

        src._client.fetch = counting
        items = list(src.list())
        sizes = []
        for item in items:
            for payload in src.fetch(item):
                sink = Sink()
                payload.write_to(sink)
                sizes.append(len(sink.data))
    assert calls == [list(range(1, 13)), [13], [14, 15, 16, 17]]
    assert sizes[12] == 3 << 20 and len(sizes) == 17


def test_moving_without_the_move_capability_expunges_only_that_uid(
    imap_server: ImapServer, folder: str
) -> None:
    """RFC 4315: UID EXPUNGE of the filed message never removes another \\Deleted one."""
    append(imap_server, folder, with_log("a", LOGS[0]), with_log("b", LOGS[1]))
    with imap(imap_server, folder) as c:
        c.add_flags([2], [b"\\Deleted"])  # a person's pending deletion
    src = source_for(imap_server, folder, after_ingest=AfterIngest("move", f"{folder}.Done"))
    with src:
        src._caps.discard("MOVE")
        (item, _) = list(src.list())
        list(src.fetch(item))
        src.ack(item)
    with imap(imap_server, folder) as c:
        assert c.search() == [2]
        c.select_folder(f"{folder}.Done")
        assert len(c.search()) == 1


# -- the server goes away -------------------------------------------------------------------
class CutProxy(threading.Thread):
    """TCP relay in front of the server; SIGKILLs the server after `cut_after` bytes came back."""

    def __init__(self, target: int, cut_after: int, on_cut) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.cut_after, self.on_cut = target, cut_after, on_cut
        self.cut = False

    def run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target))
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        down = 0
        try:
            while not self.cut:
                for key, _ in sel.select(timeout=30):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
                    if key.fileobj is server:
                        down += len(data)
                        if down > self.cut_after:
                            self.on_cut()
                            self.cut = True
                            break
        finally:
            client.close()
            server.close()
            self.listener.close()


def test_server_killed_mid_fetch_is_exit_3_and_the_next_run_files_everything_once(
    ws_sqlite: Workspace,
) -> None:
    from servers._proc import wait_for_port

    ws = ws_sqlite
    with private_dovecot() as srv:
        msgs = [
            with_log(f"run {i}", RUN_LOG, data=RUN_LOG.read_bytes() * 4 + f"run {i}\n".encode())
            for i in range(30)
        ]
        append(srv, "INBOX", *msgs)
        proxy = CutProxy(srv.ssl_port, cut_after=600_000, on_cut=srv.kill)
        proxy.start()
        use_imap(ws, srv, "INBOX", port=proxy.port, fetch_batch="5", after_ingest="seen")
        first = ws.run("imap-sync")
        assert proxy.cut
        assert first.code == 3
        assert "lost during UID FETCH" in first.err and "Traceback" not in first.err
        filed_first = ws.count("receipts")
        assert 0 < filed_first < 30

        restart = f"/usr/sbin/dovecot -c {srv.conf} </dev/null >/dev/null 2>&1"
        assert srv._keeper.run(["bash", "-c", restart]).returncode == 0  # under the keeper
        assert wait_for_port(srv.ssl_port)
        use_imap(ws, srv, "INBOX")
        second = ws.run("imap-sync")
        assert second.code == 0, second.err
        got = receipts(ws)
        assert len(got) == len({r["item"] for r in got}) == 30
        assert ws.count("files") == 30
        assert " dup=0 " in summary(ws)
        with imap(srv, "INBOX") as c:
            flags = c.get_flags(c.search())
        assert all(b"\\Seen" in f for f in flags.values()), "acks of the cut run were redone"
