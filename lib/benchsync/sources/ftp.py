"""A drop folder on a remote FTP or FTPS server, pulled with stdlib ftplib.

RFC 959 (FTP), RFC 4217 (explicit TLS: AUTH TLS, PBSZ 0, PROT P), RFC 3659 (MLSD/MLST
facts, MDTM, SIZE). One control connection per run is reused for the listing, every
download and every acknowledgement; when it drops, it is reopened once, and a second drop
(or a server that does not answer) stops the run with SourceUnreachable (exit 3).

Settle clock: FTP has no "what time is it" command, so `clock()` measures the server's
clock once per run by storing an empty probe file (`.benchsync-clock`) in the queue
folder, reading its time back the way items are read (MDTM for MLSD servers, LIST for
the others, so the server's zone and precision cancel out), and deleting it. The result
errs towards "younger" by the listing's precision. When the probe cannot be written
(read-only account) or `clock_probe = false`, nothing settles by age: files settle only
once their size and modify time are unchanged between two polls.
"""

from __future__ import annotations

import ftplib
import io
import logging
import netrc
import posixpath
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ..config import Section
from ..errors import ConfigError, ItemError, ItemRejected, SourceUnreachable
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
from .ftplist import (
    DIR,
    FILE,
    LINK,
    SKIP,
    UNPARSED,
    Entry,
    parse_list_line,
    parse_mlsd_line,
    parse_time_val,
    split_lines,
)

log = logging.getLogger("benchsync")

CHUNK = 256 * 1024
PROBE = ".benchsync-clock"
MLSD_FACTS = ("type", "size", "modify", "unique")  # RFC 3659 §7.5
_DROPPED = (OSError, EOFError, ftplib.error_reply, ftplib.error_proto)
T = TypeVar("T")


class _WriterFailed(Exception):
    """Carries the writer's own error (item too large, store full) past the drop handling."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Endpoint:
    """Where the drop folder is: `ftp[s]://user@host[:port]/path` (RFC 1738 §3.2)."""

    scheme: str
    host: str
    port: int | None
    user: str
    path: str  # relative to the login folder unless it starts with "/" (`ftp://h//abs`)

    @property
    def tls(self) -> bool:
        return self.scheme == "ftps"

    @property
    def url(self) -> str:
        """The source's name in receipts and logs: never a password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.user}@{host}{port}/{self.path}"

    @classmethod
    def parse(cls, spec: str, default_user: str | None) -> Endpoint:
        """Read the URL; a password inside it is refused (it would end up in logs)."""
        parts = urlsplit(spec)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"[ftp] source = {spec!r}: the port is not a number") from None
        if parts.password is not None:
            raise ConfigError("[ftp] source: remove the password from the URL; use password_file")
        if not parts.hostname:
            raise ConfigError(f"[ftp] source = {spec!r}: no host name")
        user = unquote(parts.username) if parts.username else (default_user or "")
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        return cls(parts.scheme.lower(), parts.hostname, port, user, path.rstrip("/") or "")


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
        self._password = password
        self.settle_seconds = settle_seconds
        self.after_ingest = after_ingest
        self.recursive = recursive
        self.submitter_from_path = submitter_from_path
        self.tls_ca, self.tls_verify = tls_ca, tls_verify
        self.timeout, self.passive, self.clock_probe = timeout, passive, clock_probe
        self._ftp: ftplib.FTP | None = None
        self._root = "/"  # absolute path of the queue folder, from PWD
        self._mlsd = True
        self._mlst = False
        self._reconnected = False
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
        login, password = _credentials(section, ep)
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
        if self.endpoint.tls and not self.tls_verify:
            log.warning("TLS certificate of %s is NOT verified (tls_verify = false)", self.url)
        self._connect()

    def _connect(self) -> ftplib.FTP:
        """Connect, log in, protect the data channel, change into the queue folder."""
        ep, stage = self.endpoint, "connect"
        ftp = ftplib.FTP_TLS(context=self._tls_context()) if ep.tls else ftplib.FTP()
        try:
            ftp.connect(ep.host, ep.port or 21, timeout=self.timeout)
            if isinstance(ftp, ftplib.FTP_TLS):
                stage = "tls"
                ftp.auth()
            stage = "login"
            ftp.login(ep.user, self._password)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.set_pasv(self.passive)
            ftp.voidcmd("TYPE I")  # image type for every transfer (RFC 959 §3.1.1.3)
            stage = "folder"
            if ep.path:
                ftp.cwd(ep.path)
            self._root = ftp.pwd()
            self._features(ftp)
            if self.after_ingest.action == "move":
                self._make_folder(ftp, self._move_folder())
        except (*_DROPPED, ftplib.Error, ValueError) as e:
            _close(ftp)
            raise SourceUnreachable(self._connect_error(stage, e)) from None
        self._ftp = ftp
        return ftp

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect_error(self, stage: str, e: BaseException) -> str:
        where = f"{self.url}"
        if stage == "login" and isinstance(e, ftplib.error_perm):
            return (
                f"{where}: login refused for {self.endpoint.user}: {_said(e)} (check password_file)"
            )
        if stage == "folder" and isinstance(e, ftplib.error_perm):
            return f"{where}: cannot open the remote folder: {_said(e)}"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"{where}: TLS certificate not trusted: {e.verify_message} (set [ftp] tls_ca)"
        if stage == "tls" and isinstance(e, ftplib.Error):
            return f"{where}: server refused explicit TLS (AUTH TLS): {_said(e)}"
        return f"{where}: cannot connect: {self._describe(e)}"

    def _describe(self, e: BaseException) -> str:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, TimeoutError | socket.timeout):
            return f"no answer within {self.timeout:g} s"
        if isinstance(e, socket.gaierror):
            return f"host name not found ({e.strerror})"
        if isinstance(e, EOFError):
            return "the server closed the connection"
        if isinstance(e, ftplib.Error):
            return f"server said {_said(e)}"
        if isinstance(e, OSError):
            return e.strerror or str(e) or type(e).__name__
        return str(e) or type(e).__name__

    def _features(self, ftp: ftplib.FTP) -> None:
        """FEAT (RFC 2389): list with MLSD only when the server offers MLST (RFC 3659 §7.8)."""
        try:
            feat = ftp.sendcmd("FEAT")
        except ftplib.error_perm:
            feat = ""
        names = {line.strip().split(" ")[0].upper() for line in feat.splitlines()[1:-1]}
        self._mlst = self._mlsd = "MLST" in names
        if self._mlsd:
            _quietly(ftp.sendcmd, "OPTS MLST " + "".join(f + ";" for f in MLSD_FACTS))

    def _client(self) -> ftplib.FTP:
        return self._ftp if self._ftp is not None else self._connect()

    def _call(self, what: str, op: Callable[[ftplib.FTP], T]) -> T:
        """Run `op` on the connection; on a drop, reconnect once per run and try again."""
        try:
            return op(self._client())
        except _DROPPED as e:
            self._drop()
            lost = f"{self.url}: connection lost during {what} ({self._describe(e)})"
            if self._reconnected:
                raise SourceUnreachable(lost) from None
        self._reconnected = True
        log.info("%s: reconnecting once", lost)
        try:
            self._connect()
        except SourceUnreachable as e:
            why = str(e).removeprefix(f"{self.url}: ")
            raise SourceUnreachable(f"{lost}; reconnecting failed: {why}") from None
        try:
            return op(self._client())
        except _DROPPED as e:
            self._drop()
            raise SourceUnreachable(
                f"{self.url}: connection lost again during {what} ({self._describe(e)})"
            ) from None

    def _drop(self) -> None:
        if self._ftp is not None:
            self._ftp.close()
            self._ftp = None

    def close(self) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is not None:
            try:
                ftp.quit()
            except (*_DROPPED, ftplib.Error):
                pass
            _close(ftp)

    # -- clock -----------------------------------------------------------------------------
    def clock(self) -> float:
        """The server's idea of now, measured once per run (see the module docstring)."""
        if self.settle_seconds <= 0:
            return time.time()
        if self._offset is None:
            self._offset = self._call("clock probe", self._probe_clock)
        return time.time() + self._offset

    def _probe_clock(self, ftp: ftplib.FTP) -> float:
        if not self.clock_probe:
            return float("-inf")
        try:
            ftp.storbinary(f"STOR {PROBE}", io.BytesIO(b""))
            stored = time.time()
            if self._mlsd:
                server, slack = parse_time_val(ftp.sendcmd(f"MDTM {PROBE}")[4:]), 1.0
            else:
                [line] = split_lines(self._transfer(ftp, f"LIST {PROBE}"))
                server, slack = parse_list_line(line, stored).mtime, 60.0
            _quietly(ftp.delete, PROBE)
        except (ftplib.Error, ValueError) as e:
            log.info("server clock unknown (%s): files settle after two unchanged polls", _said(e))
            return float("-inf")
        if server is None:
            log.info("server clock unknown (unreadable probe time): files settle after two polls")
            return float("-inf")
        offset = server - stored - slack
        if abs(offset + slack) > 5:
            log.info("server clock is %+.0f s from ours (measured with %s)", offset + slack, PROBE)
        return offset

    # -- listing ---------------------------------------------------------------------------
    def list(self) -> Iterator[Item]:
        """One listing per folder, read whole before any item is handed out."""
        if not self._mlsd and not self._said_list:
            self._said_list = True
            log.info(
                "%s has no MLSD (RFC 3659): listing with LIST (minute-precision times)", self.url
            )
        return iter(self._call("listing", lambda ftp: list(self._walk(ftp, b""))))

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
        cmd = "MLSD" if self._mlsd else "LIST"
        if prefix:
            cmd += " " + prefix.rstrip(b"/").decode()
        lines = split_lines(self._transfer(ftp, cmd))
        if self._mlsd:
            return [parse_mlsd_line(line) for line in lines]
        return [parse_list_line(line, now) for line in lines]

    def _transfer(self, ftp: ftplib.FTP, cmd: str) -> bytes:
        """A listing's raw bytes (a data connection, RFC 959 §3.2)."""
        buf = bytearray()
        with ftp.transfercmd(cmd) as conn:
            while chunk := conn.recv(CHUNK):
                buf += chunk
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        ftp.voidresp()
        return bytes(buf)

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
        item.meta = {"remote_path": posixpath.join(self._root, item.key)}
        return item

    def _move_folder(self) -> str:
        folder = self.after_ingest.folder or ""
        return posixpath.normpath(posixpath.join(self._root, folder))

    def _is_move_folder(self, rel: bytes) -> bool:
        if self.after_ingest.action != "move":
            return False
        return posixpath.join(self._root, rel.decode("utf-8", "replace")) == self._move_folder()

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
                raise ItemRejected(f"server refused RETR: {_said(e)}") from None
            except ftplib.error_temp as e:
                raise ItemError(f"server refused RETR for now: {_said(e)}") from None
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
                raise ItemError(f"transfer failed: {_said(e)}") from None

        try:
            self._call("download", op)
        except _WriterFailed as e:
            raise e.error from None

    def _resync(self, ftp: ftplib.FTP) -> None:
        """After we cut a transfer, read RETR's final reply (426 or 226) so the next command
        gets its own reply; drop the connection (reopened on next use) if that fails."""
        try:
            ftp.getresp()
        except (ftplib.error_temp, ftplib.error_perm):
            pass
        except (*_DROPPED, ftplib.Error):
            self._drop()

    # -- acknowledgement -------------------------------------------------------------------
    def ack(self, item: Item) -> None:
        """DELE, or RNFR+RNTO into the move folder; only if the file is still what was filed."""
        if self.after_ingest.action == "keep":
            return
        self._call("acknowledgement", lambda ftp: self._ack(ftp, item.handle, item))

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
            raise ItemError(f"server refused: {_said(e)}") from None
        except ftplib.error_temp as e:
            raise ItemError(f"server refused for now: {_said(e)}") from None

    def _stat(self, ftp: ftplib.FTP, path: str) -> tuple[int | None, float | None] | None:
        """(size, modify) now: MLST (RFC 3659 §7) or SIZE (§4); None when the file is gone."""
        try:
            if self._mlst:
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
            _quietly(ftp.mkd, "/" + "/".join(parts[:i]))
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


def _credentials(section: Section, ep: Endpoint) -> tuple[str, str]:
    """The user and password: password_file (0600), else ~/.netrc; anonymous needs none."""
    password = section.get_secret("password_file")
    entry = None
    if password is None or not ep.user:
        try:
            entry = netrc.netrc().authenticators(ep.host)
        except FileNotFoundError:
            entry = None
        except (netrc.NetrcParseError, OSError) as e:
            raise ConfigError(f"cannot use ~/.netrc: {e}") from None
    user = ep.user or (entry[0] if entry else "") or "anonymous"
    if password is None and entry and entry[0] == user:
        password = entry[2]
    if password is None and user in ("anonymous", "ftp"):
        password = "anonymous@"
    if password is None:
        raise ConfigError(
            f"[ftp] no password for {user}@{ep.host}: set password_file (a 0600 file) "
            "or add the host to ~/.netrc"
        )
    return user, password


def _said(e: BaseException) -> str:
    """The server's reply as one line, e.g. `530 Login incorrect.`."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _quietly(fn: Callable[[str], Any], arg: str) -> None:
    try:
        fn(arg)
    except ftplib.error_perm:
        pass


def _close(ftp: ftplib.FTP) -> None:
    try:
        ftp.close()
    except OSError:
        pass
