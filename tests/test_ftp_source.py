"""FtpSource used directly against the real pyftpdlib servers: aborted downloads, dropped
connections; and its pure parts (listing lines, hostile names, URLs) on hand-written input."""

from __future__ import annotations

import calendar
import ftplib
import hashlib
import socket
import time
import uuid
from pathlib import Path

import pytest

from benchsync.config import Config
from benchsync.errors import ConfigError, ItemRejected, SourceUnreachable
from benchsync.sources.base import AfterIngest
from benchsync.sources.ftp import Endpoint, FtpSource, _problem
from benchsync.sources.ftplist import (
    DIR,
    FILE,
    LINK,
    SKIP,
    UNPARSED,
    parse_list_line,
    parse_mlsd_line,
    split_lines,
)
from conftest import sample_log


class Sink:
    """A writer like the store's, that refuses more than `limit` bytes."""

    def __init__(self, limit: int = 1 << 40) -> None:
        self.data = bytearray()
        self.limit = limit

    def write(self, chunk: bytes) -> int:
        if len(self.data) + len(chunk) > self.limit:
            raise ItemRejected("too large")
        self.data += chunk
        return len(chunk)


def source_on(server, folder: str) -> FtpSource:
    ep = Endpoint("ftps" if server.tls else "ftp", "127.0.0.1", server.port, server.user, folder)
    ca = str(server.cafile) if server.tls else None
    return FtpSource(ep, server.password, 0, AfterIngest("keep"), tls_ca=ca, timeout=10)


def fetch(source: FtpSource, item, limit: int = 1 << 40) -> bytes:
    sink = Sink(limit)
    for payload in source.fetch(item):
        payload.write_to(sink)
    return bytes(sink.data)


@pytest.fixture
def folder(ftp_server) -> tuple[Path, str]:
    name = f"s-{uuid.uuid4().hex[:8]}"
    (Path(ftp_server.home) / name).mkdir()
    return Path(ftp_server.home) / name, name


def test_a_writer_error_mid_transfer_leaves_the_connection_usable(ftp_server, folder) -> None:
    local, name = folder
    big = bytes(range(256)) * 40_000  # 10 MB: still streaming when the writer refuses
    (local / "big.log").write_bytes(big)
    (local / "small.log").write_bytes(sample_log(3))
    with source_on(ftp_server, name) as src:
        items = {i.key: i for i in src.list()}
        with pytest.raises(ItemRejected):
            fetch(src, items["big.log"], limit=1 << 20)
        assert fetch(src, items["small.log"]) == sample_log(3)
        assert fetch(src, items["big.log"]) == big


def test_a_dropped_control_connection_is_reopened_once(ftp_server, folder) -> None:
    local, name = folder
    (local / "a.log").write_bytes(sample_log(1))
    with source_on(ftp_server, name) as src:
        src._conn.ftp.sock.shutdown(socket.SHUT_RDWR)  # as if the server hung up
        [item] = src.list()
        assert hashlib.md5(fetch(src, item)).digest() == hashlib.md5(sample_log(1)).digest()
        src._conn.ftp.sock.shutdown(socket.SHUT_RDWR)
        with pytest.raises(SourceUnreachable, match="connection lost during download"):
            fetch(src, item)


# -- pure parts ------------------------------------------------------------------------------
def test_mlsd_lines_give_kind_size_and_utc_modify_time() -> None:
    e = parse_mlsd_line(b"modify=20261204212506.5;size=42;type=file;unique=fe00g1; run 1.log")
    assert (e.name, e.kind, e.size, e.unique) == (b"run 1.log", FILE, 42, "fe00g1")
    assert e.mtime == calendar.timegm((2026, 12, 4, 21, 25, 6)) + 0.5
    assert parse_mlsd_line(b"type=dir;modify=20260101000000; sub").kind == DIR
    assert parse_mlsd_line(b"type=cdir; .").kind == SKIP
    assert parse_mlsd_line(b"type=OS.unix=slink:/etc/passwd;size=11; p").kind == LINK
    assert parse_mlsd_line(b"type=OS.unix=symlink; p").kind == LINK
    assert parse_mlsd_line(b"no-facts-no-space").kind == UNPARSED


def test_list_lines_from_vsftpd_and_friends() -> None:
    now = calendar.timegm((2026, 12, 4, 21, 30, 0))
    e = parse_list_line(b"-rw-r--r--    1 0        0            8000 Dec 04 21:25 a b.log", now)
    assert (e.name, e.kind, e.size) == (b"a b.log", FILE, 8000)
    assert e.mtime == calendar.timegm((2026, 12, 4, 21, 25, 0))
    link = parse_list_line(b"lrwxrwxrwx 1 0 0 6 Dec 04 21:25 link.log -> ok.log", now)
    assert (link.name, link.kind) == (b"link.log", LINK)
    old = parse_list_line(b"-rw-r--r-- 1 ftp ftp 5 Mar 05  2023 old.log", now)
    assert old.mtime == calendar.timegm((2023, 3, 5, 0, 0, 0))
    last_year = parse_list_line(b"-rw-r--r-- 1 ftp ftp 5 Dec 31 23:59 ny.log", now)
    assert time_year(last_year.mtime) == 2025, "a date after today is last year's"
    assert parse_list_line(b"drwxr-xr-x 2 0 0 4096 Dec 04 21:25 sub", now).kind == DIR
    assert parse_list_line(b"total 12", now).kind == SKIP
    assert parse_list_line(b"garbage", now).kind == UNPARSED
    assert split_lines(b"a\r\nb\nc\r\n") == [b"a", b"b\nc"], "a bare LF stays in the name"


def time_year(stamp: float | None) -> int:
    assert stamp is not None
    return time.gmtime(stamp).tm_year


@pytest.mark.parametrize(
    "name, reason",
    [
        (b"../x", "path separators"),
        (b"/etc/passwd", "path separators"),
        (b"..", "dot entries"),
        (b"a\\b", "path separators"),
        (b"cr\rname", "control characters"),
        (b"x" * 256, "longer than 255 bytes"),
        (b"latin1-\xe9.log", "not valid UTF-8"),
        ("repl-\ufffd.log".encode(), "server replaced its bytes"),
    ],
)
def test_hostile_remote_names_are_problems(name: bytes, reason: str) -> None:
    entry = parse_mlsd_line(b"type=file;size=3;modify=20260101000000; " + name)
    assert entry.name == name
    assert reason in (_problem(entry) or "")


def test_a_plain_name_has_no_problem() -> None:
    assert _problem(parse_mlsd_line(b"type=file;size=3; run-5018-benchmark.log")) is None


def test_source_url_never_holds_a_password_and_paths_follow_rfc_1738(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    ep = Endpoint.parse("ftps://up%40load@files.example:2121/in/box/", None)
    assert (ep.user, ep.host, ep.port, ep.path) == ("up@load", "files.example", 2121, "in/box")
    assert ep.url == "ftps://up@load@files.example:2121/in/box"
    assert Endpoint.parse("ftp://u@h//srv/queue", None).path == "/srv/queue"
    with pytest.raises(ConfigError, match="remove the password"):
        Endpoint.parse("ftp://u:secret@h/q", None)
    config = Config.from_dict({"ftp": {"source": "ftp://u@h/q"}}, tmp_path)
    with pytest.raises(ConfigError, match="no password for u@h"):
        FtpSource.from_config(
            config.section("ftp"), "ftp://u@h/q", 0, AfterIngest("keep"), False, False
        )


def test_a_dry_run_stores_no_clock_probe_on_the_server(ftp_server, folder, monkeypatch) -> None:
    _, name = folder
    stored: list[str] = []
    real = ftplib.FTP.storbinary

    def spy(self, cmd, *args, **kwargs):
        stored.append(cmd)
        return real(self, cmd, *args, **kwargs)

    monkeypatch.setattr(ftplib.FTP, "storbinary", spy)
    with source_on(ftp_server, name) as src:
        src.settle_seconds = 60
        src.dry_run = True
        assert src.clock() == float("-inf")
        assert stored == []
    with source_on(ftp_server, name) as src:
        src.settle_seconds = 60
        assert abs(src.clock() - time.time()) < 120
        assert stored and "benchsync-clock" in stored[0]
