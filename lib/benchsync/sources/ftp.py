"""A drop folder on a remote FTP or FTPS server, pulled with stdlib ftplib.

RFC 959 (FTP), RFC 3659 (MLSD/MLST facts, SIZE). This module lists, downloads and
acknowledges; the control connection (URL, credentials, TLS, login, reconnecting once)
and the server-clock probe used for settle times live in `ftpconn`.
"""

from __future__ import annotations

import ftplib
import logging
import posixpath
import ssl
import time
from collections.abc import Iterator

from ..config import Section
from ..errors import ConfigError, ItemError, ItemRejected
from .base import (
    AfterIngest,
    Item,
    Payload,
    Source,
    Writer,
    name_problem,
    printable,
    submitter_from_key,
)
from .ftpconn import (
    CHUNK,
    DROPPED,
    PROBE,
    Endpoint,
    FtpConnection,
    credentials,
    probe_clock,
    quietly,
    read_data,
    said,
)
from .ftplist import (
    DIR,
    FILE,
    LINK,
    SKIP,
    UNPARSED,
    Entry,
    parse_list_line,
    parse_mlsd_line,
    split_lines,
)

log = logging.getLogger("benchsync")


class _WriterFailed(Exception):
    """Carries the writer's own error (item too large, store full) past the drop handling."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class FtpSource(Source):
    """Regular files in one remote folder (optionally its subfolders); links never followed."""

    channel = "ftp"

    def __init__(
        self,
        endpoint: Endpoint,
        password: str,
        settle_seconds: float = 60.0,
        after_ingest: AfterIngest = AfterIngest("keep"),
        recursive: bool = False,
        submitter_from_path: bool = False,
        *,
        tls_ca: str | None = None,
        tls_verify: bool = True,
        timeout: float = 60.0,
        passive: bool = True,
        clock_probe: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.url = endpoint.url
        self.settle_seconds = settle_seconds
        self.after_ingest = after_ingest
        self.recursive = recursive
        self.submitter_from_path = submitter_from_path
        self.clock_probe = clock_probe
        self._conn = FtpConnection(
            endpoint,
            password,
            self._prepare,
            tls_ca=tls_ca,
            tls_verify=tls_verify,
            timeout=timeout,
            passive=passive,
        )
        self._said_list = False
        self._offset: float | None = None
        self._made: set[str] = set()

    @classmethod
    def from_config(
        cls,
        section: Section,
        spec: str,
        settle: float,
        after: AfterIngest,
        recursive: bool,
        by_path: bool,
    ) -> FtpSource:
        """Build from `[ftp]`: source URL, user, password_file or ~/.netrc, tls_ca, timeout."""
        ep = Endpoint.parse(spec, section.get("user"))
        login, password = credentials(ep, section.get_secret("password_file"))
        ep = Endpoint(ep.scheme, ep.host, ep.port, login, ep.path)
        ca = section.get_path("tls_ca")
        if ca is not None and not ep.tls:
            raise ConfigError("[ftp] tls_ca is set but the source is ftp://: use ftps://")
        if after.folder is not None and any(c in after.folder for c in "\r\n\0"):
            raise ConfigError(f"[ftp] after_ingest = move:{after.folder}: not a usable folder")
        return cls(
            ep,
            password,
            settle,
            after,
            recursive,
            by_path,
            tls_ca=str(ca) if ca else None,
            tls_verify=section.get_bool("tls_verify", True),
            timeout=section.get_float("timeout", 60.0),
            passive=section.get_bool("passive", True),
            clock_probe=section.get_bool("clock_probe", True),
        )

    # -- connection ----------------------------------------------------------------------
    def open(self) -> None:
        """Connect and log in now, so a bad host or password stops the run up front."""
        self._conn.open()

    def _prepare(self, ftp: ftplib.FTP) -> None:
        """Run on every (re)connect, inside the connection's error handling."""
        if self.after_ingest.action == "move":
            self._make_folder(ftp, self._move_folder())

    def close(self) -> None:
        """QUIT the control connection, if one is open."""
        self._conn.close()

    # -- clock -----------------------------------------------------------------------------
    def clock(self) -> float:
        """The server's idea of now, measured once per run (see `ftpconn`'s docstring)."""
        if self.settle_seconds <= 0:
            return time.time()
        if self._offset is None:
            self._offset = self._conn.call("clock probe", self._probe_clock)
        return time.time() + self._offset

    def _probe_clock(self, ftp: ftplib.FTP) -> float:
        if not self.clock_probe or self.dry_run:  # nothing settles by age, only by two polls
            return float("-inf")
        return probe_clock(ftp, self._conn.mlsd)

    # -- listing ---------------------------------------------------------------------------
    def list(self) -> Iterator[Item]:
        """One listing per folder, read whole before any item is handed out."""
        if not self._conn.mlsd and not self._said_list:
            self._said_list = True
            log.info(
                "%s has no MLSD (RFC 3659): listing with LIST (minute-precision times)", self.url
            )
        return iter(self._conn.call("listing", lambda ftp: list(self._walk(ftp, b""))))

    def _walk(self, ftp: ftplib.FTP, prefix: bytes) -> Iterator[Item]:
        for entry in self._listdir(ftp, prefix, time.time()):
            rel = prefix + entry.name
            if entry.kind == SKIP or rel == PROBE.encode():
                continue
            if entry.kind == DIR and self._is_move_folder(rel):
                continue
            if entry.kind == DIR and self.recursive and not name_problem(entry.name):
                yield from self._walk(ftp, rel + b"/")
                continue
            yield self._item(rel, entry)

    def _listdir(self, ftp: ftplib.FTP, prefix: bytes, now: float) -> list[Entry]:
        cmd = "MLSD" if self._conn.mlsd else "LIST"
        if prefix:
            cmd += " " + prefix.rstrip(b"/").decode()
        lines = split_lines(read_data(ftp, cmd))
        if self._conn.mlsd:
            return [parse_mlsd_line(line) for line in lines]
        return [parse_list_line(line, now) for line in lines]

    def _item(self, rel: bytes, entry: Entry) -> Item:
        key = printable(rel) if entry.kind != UNPARSED else "unparsed:" + printable(rel)[:200]
        item = Item(
            key=key,
            name=printable(entry.name),
            size=entry.size,
            mtime=entry.mtime,
            problem=_problem(entry),
            handle=rel.decode("utf-8", "replace"),
        )
        item.submitter = submitter_from_key(item.key, self.submitter_from_path)
        item.meta = {"remote_path": posixpath.join(self._conn.root, item.key)}
        return item

    def _move_folder(self) -> str:
        folder = self.after_ingest.folder or ""
        return posixpath.normpath(posixpath.join(self._conn.root, folder))

    def _is_move_folder(self, rel: bytes) -> bool:
        if self.after_ingest.action != "move":
            return False
        path = posixpath.join(self._conn.root, rel.decode("utf-8", "replace"))
        return path == self._move_folder()

    # -- download --------------------------------------------------------------------------
    def fetch(self, item: Item) -> Iterator[Payload]:
        yield Payload(item.name, lambda w: self._retrieve(item.handle, w), item.size)

    def _retrieve(self, path: str, writer: Writer) -> None:
        """RETR (binary) streamed into `writer`; a transfer cut by a drop is retried next poll."""
        got = 0

        def op(ftp: ftplib.FTP) -> None:
            nonlocal got
            if got:
                raise ItemError(f"transfer cut after {got} bytes: retried next poll")
            try:
                conn = ftp.transfercmd(f"RETR {path}")
            except ftplib.error_perm as e:
                raise ItemRejected(f"server refused RETR: {said(e)}") from None
            except ftplib.error_temp as e:
                raise ItemError(f"server refused RETR for now: {said(e)}") from None
            with conn:
                while chunk := conn.recv(CHUNK):
                    got += len(chunk)
                    try:
                        writer.write(chunk)
                    except BaseException as e:  # noqa: BLE001 - re-raised after the cleanup
                        conn.close()
                        self._resync(ftp)
                        raise _WriterFailed(e) from None
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
            try:
                ftp.voidresp()
            except (ftplib.error_temp, ftplib.error_perm) as e:
                raise ItemError(f"transfer failed: {said(e)}") from None

        try:
            self._conn.call("download", op)
        except _WriterFailed as e:
            raise e.error from None

    def _resync(self, ftp: ftplib.FTP) -> None:
        """After we cut a transfer, read RETR's final reply (426 or 226) so the next command
        gets its own reply; drop the connection (reopened on next use) if that fails."""
        try:
            ftp.getresp()
        except (ftplib.error_temp, ftplib.error_perm):
            pass
        except (*DROPPED, ftplib.Error):
            self._conn.drop()

    # -- acknowledgement -------------------------------------------------------------------
    def ack(self, item: Item) -> None:
        """DELE, or RNFR+RNTO into the move folder; only if the file is still what was filed."""
        if self.after_ingest.action == "keep":
            return
        self._conn.call("acknowledgement", lambda ftp: self._ack(ftp, item.handle, item))

    def _ack(self, ftp: ftplib.FTP, path: str, item: Item) -> None:
        try:
            now = self._stat(ftp, path)
            if now is None:
                return  # gone already
            size, mtime = now
            if (size is not None and size != item.size) or (
                mtime is not None and item.mtime is not None and mtime != item.mtime
            ):
                raise ItemError("changed after it was filed: left in place, it will be filed again")
            if self.after_ingest.action == "delete":
                ftp.delete(path)
            else:
                self._move(ftp, path)
        except ftplib.error_perm as e:
            raise ItemError(f"server refused: {said(e)}") from None
        except ftplib.error_temp as e:
            raise ItemError(f"server refused for now: {said(e)}") from None

    def _stat(self, ftp: ftplib.FTP, path: str) -> tuple[int | None, float | None] | None:
        """(size, modify) now: MLST (RFC 3659 §7) or SIZE (§4); None when the file is gone."""
        try:
            if self._conn.mlst:
                reply = ftp.sendcmd(f"MLST {path}").splitlines()
                entry = parse_mlsd_line(reply[1][1:].encode()) if len(reply) > 2 else None
                return (entry.size, entry.mtime) if entry else (None, None)
            return (ftp.size(path), None)
        except ftplib.error_perm as e:
            if str(e).startswith("550"):
                return None
            return (None, None)

    def _move(self, ftp: ftplib.FTP, path: str) -> None:
        dest = posixpath.join(self._move_folder(), path)
        self._make_folder(ftp, posixpath.dirname(dest))
        candidate, n = dest, 0
        while n < 1000 and self._stat(ftp, candidate) not in (None, (None, None)):
            n += 1
            candidate = f"{dest}.{n}"  # never overwrite an earlier file of the same name
        ftp.rename(path, candidate)

    def _make_folder(self, ftp: ftplib.FTP, folder: str) -> None:
        """MKD each level of `folder` once per run (an existing one answers 550: fine)."""
        if folder in self._made:
            return
        parts = folder.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            quietly(ftp.mkd, "/" + "/".join(parts[:i]))
        self._made.add(folder)


def _problem(entry: Entry) -> str | None:
    """Why a listed entry can never be filed: a hostile name, or not a regular file."""
    if entry.kind == UNPARSED:
        return "hostile name: listing line not understood (a line break in the name?)"
    problem = name_problem(entry.name)
    if problem is None and "\ufffd" in entry.name.decode("utf-8"):
        problem = "hostile name: not valid UTF-8 (the server replaced its bytes)"
    if problem is not None:
        return problem
    if entry.kind == LINK:
        return "symlink: not followed"
    if entry.kind == DIR:
        return "folder: not a file (set recursive = true to descend)"
    if entry.kind != FILE:
        return "not a regular file"
    return None
