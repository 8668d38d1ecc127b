"""Hostile mail in the mailbox: each is logged and skipped (or filed under a safe name),
nothing lands outside the store, and the rest of the folder is filed."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import resource
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

from conftest import Workspace, md5, stored_bytes
from servers.servers import ImapServer
from test_imap import LOGS, append, mail, new_folder, receipts, summary, use_imap, with_log
from test_mail import gzip_bomb

BOUNDARY = b"=====b0undary====="


def raw_mail(subject: bytes, parts: list[bytes], content_type: bytes | None = None) -> bytes:
    """A hand-written multipart/mixed message (CRLF), for what `email` refuses to produce."""
    ctype = content_type or b'multipart/mixed; boundary="' + BOUNDARY + b'"'
    head = (
        b"From: Mallory <mallory@example.org>\r\nTo: benchmarks@example.org\r\n"
        b"Subject: " + subject + b"\r\nMessage-ID: <" + subject.replace(b" ", b"-") + b"@x>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"\r\n\r\n"
    )
    body = b"".join(b"--" + BOUNDARY + b"\r\n" + p + b"\r\n" for p in parts)
    return head + body + b"--" + BOUNDARY + b"--\r\n"


def part(disposition: bytes, data: bytes, ctype: bytes = b"text/plain") -> bytes:
    import base64

    return (
        b"Content-Type: " + ctype + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
    )


def attached(subject: str, name: str, data: bytes, subtype: str = "octet-stream") -> EmailMessage:
    m = mail(subject)
    m.add_attachment(data, "application", subtype, filename=name)
    return m


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def log_bytes(i: int) -> bytes:
    return LOGS[i % len(LOGS)].read_bytes()


def hostile_folder() -> list[tuple[str, bytes | EmailMessage, str]]:
    """(case, message, expected): expected is a receipt name, 'nothing', or a reason prefix."""
    deep = log_bytes(0)
    for _ in range(4):
        deep = gzip.compress(deep)
    return [
        ("good first", with_log("good first", LOGS[0]), LOGS[0].name),
        ("dot-dot name", attached("a", "../../x", log_bytes(1)), "x"),
        ("absolute name", attached("b", "/etc/passwd", log_bytes(2)), "passwd"),
        ("windows name", attached("c", "C:\\x", log_bytes(3)), "x"),
        (
            "empty name",
            raw_mail(b"empty name", [part(b'attachment; filename=""', log_bytes(4))]),
            "attachment",
        ),
        ("300-char name", attached("e", "n" * 296 + ".log", log_bytes(5)), "n" * 251 + ".log"),
        (
            "encoded-word name",
            raw_mail(
                b"encoded word",
                [part(b'attachment; filename="=?utf-8?b?Li4vLi4vw6l2aWwubG9n?="', log_bytes(6))],
            ),
            "évil.log",
        ),
        (
            "newline in an RFC 2231 name",
            raw_mail(b"rfc2231", [part(b"attachment; filename*=utf-8''ev%0Ail.log", log_bytes(7))]),
            "ev?il.log",
        ),
        (
            "broken base64",
            raw_mail(
                b"broken base64",
                [
                    b'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="r.log"'
                    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nQlJMLUNBRC!!!@@@\r\nQ\r\n"
                ],
            ),
            "broken base64 in attachment 'r.log'",
        ),
        (
            "missing boundary",
            raw_mail(
                b"no boundary", [part(b"attachment; filename=a", log_bytes(8))], b"multipart/mixed"
            ),
            "malformed MIME",
        ),
        (
            "boundary never found",
            raw_mail(
                b"lost boundary",
                [part(b"attachment; filename=a.log", log_bytes(8))],
                b'multipart/mixed; boundary="not-there"',
            ),
            "malformed MIME",
        ),
        (
            "1 GiB gzip bomb",
            attached("bomb", "results.log.gz", gzip_bomb(), "gzip"),
            "decompression bomb",
        ),
        (
            "zip with ../ members",
            attached("slip", "logs.zip", zip_bytes({"../../etc/cron.d/evil": log_bytes(9)}), "zip"),
            "zip 'logs.zip' member '../../etc/cron.d/evil': path outside the archive",
        ),
        (
            "zip of 10,000 members",
            attached("many", "many.zip", zip_bytes({f"{i}": b"x" for i in range(10000)}), "zip"),
            "zip 'many.zip' has 10000 members",
        ),
        (
            "tar with an absolute member",
            attached("tar abs", "logs.tar", tar_bytes({"/etc/passwd": log_bytes(10)}), "x-tar"),
            "tar 'logs.tar' member '/etc/passwd': absolute path",
        ),
        ("nested 4 deep", attached("deep", "deep.gz", deep, "gzip"), "archive 'deep' nested"),
        ("50 MB message", attached("huge", "huge.log", os.urandom(37_500_000)), "attachment 'huge"),
        (
            "non-UTF-8 headers",
            b"From: \xc9mile \xff <emile@example.org>\r\nSubject: r\xe9sultats \xff\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\""
            + BOUNDARY + b'"\r\n\r\n'
            b"--" + BOUNDARY + b"\r\n" + part(b'attachment; filename="caf\xe9.log"', log_bytes(11))
            + b"\r\n--" + BOUNDARY + b"--\r\n",
            "caf\ufffd.log",
        ),
        ("not a mail at all", bytes(range(1, 256)) * 40, "nothing"),
        ("good last", with_log("good last", LOGS[12], n=2), LOGS[12].name),
    ]  # fmt: skip


def test_hostile_mails_are_logged_and_skipped_and_the_rest_is_filed(
    ws_sqlite: Workspace, imap_server: ImapServer, tmp_path: Path
) -> None:
    ws = ws_sqlite
    folder = new_folder()
    cases = hostile_folder()
    assert len(cases) - 2 >= 15, "at least 15 hostile mails"
    append(imap_server, folder, *(msg for _, msg, _ in cases))
    use_imap(ws, imap_server, folder, max_attachment_bytes="8 MiB", after_ingest="seen")
    passwd = hashlib.md5(Path("/etc/passwd").read_bytes()).hexdigest()
    cwd_before = set(os.listdir(Path.cwd()))

    result = ws.run("imap-sync", timeout=300)

    assert result.code == 1, "some messages were rejected"
    assert "Traceback" not in result.err + ws.log_text("imap_sync")
    validity = ws.rows("SELECT value FROM source_state WHERE key = 'watermark'")[0][0].split(":")[0]
    states = {
        int(item.split(":")[1]): (status, reason)
        for item, status, reason in ws.rows("SELECT item, status, reason FROM source_items")
    }
    by_uid = {}
    for r in receipts(ws):
        by_uid.setdefault(r["meta"]["uid"], []).append(r)
    log = ws.log_text("imap_sync")
    for uid, (case, _, expected) in enumerate(cases, start=1):
        status, reason = states[uid]
        got = by_uid.get(uid, [])
        if expected == "nothing":
            assert (status, reason, got) == ("filed", "nothing to file", []), case
        elif status == "rejected":
            assert reason.startswith(expected) or expected in reason, (case, reason)
            assert log.count(f"rejected item={validity}:{uid} ") == 1, case
            assert got == [], case
        else:
            assert [r["name"] for r in got] == [expected], (case, status, reason)
            assert status == "filed", case
    rejected = [c for uid, (c, _, _) in enumerate(cases, 1) if states[uid][0] == "rejected"]
    assert len(rejected) == 9, rejected

    # the names were only names: the content is stored by md5, the receipt keeps the original
    dotdot = by_uid[2][0]
    assert dotdot["meta"]["attachment_name"] == "../../x"
    assert stored_bytes(ws.store, dotdot["md5"]) == log_bytes(1)
    assert by_uid[18][0]["meta"]["subject"] == "r\\xe9sultats \\xff"
    assert by_uid[18][0]["submitter"] == "emile@example.org"

    # nothing outside the store
    stray = [
        str(p.relative_to(ws.root))
        for p in ws.root.rglob("*")
        if p.is_file() and not re.fullmatch(
            r"store/[0-9a-f]{2}/[0-9a-f]{32}\.gz|benchsync\.(ini|sqlite(-wal|-shm)?)|imap\.password"
            r"|log/imap_sync\.log|lock/imap_sync\.lock",
            str(p.relative_to(ws.root)),
        )
    ]  # fmt: skip
    assert stray == []
    assert hashlib.md5(Path("/etc/passwd").read_bytes()).hexdigest() == passwd
    assert set(os.listdir(Path.cwd())) == cwd_before
    assert not any(p.name in ("x", "evil", "passwd") for p in tmp_path.rglob("*"))
    assert ws.count("files") == 10 and md5(log_bytes(1)) in {r["md5"] for r in receipts(ws)}

    # bounded memory: the 50 MB message is fetched on its own, not with its neighbours;
    # parsing it (compat32 splits it into lines) costs ≈8x its size, ~470 MiB measured
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert peak_mib < 600, f"imap_sync peaked at {peak_mib:.0f} MiB"

    again = ws.run("imap-sync")
    assert again.code == 0, "rejected mail is remembered, not failed again"
    assert ws.log_text("imap_sync").count("rejected item=") == 9, "each logged once"
    assert " seen=0 " in summary(ws), "the watermark passed every message filed or rejected"
