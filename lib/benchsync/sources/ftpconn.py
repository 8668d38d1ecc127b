"""The FTP source's control connection: where, who, connect/TLS/login, reconnect, server clock.

RFC 959 (FTP), RFC 4217 (explicit TLS: AUTH TLS, PBSZ 0, PROT P), RFC 2389 (FEAT), RFC 3659
(MLST, MDTM). One control connection per run is reused for the listing, every download and
every acknowledgement; when it drops, it is reopened once, and a second drop (or a server
that does not answer) stops the run with SourceUnreachable (exit 3).

Settle clock: FTP has no "what time is it" command, so `probe_clock` measures the server's
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
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, SourceUnreachable
from .ftplist import parse_list_line, parse_time_val, split_lines

log = logging.getLogger("benchsync")

CHUNK = 256 * 1024
PROBE = ".benchsync-clock"
MLSD_FACTS = ("type", "size", "modify", "unique")  # RFC 3659 §7.5
DROPPED = (OSError, EOFError, ftplib.error_reply, ftplib.error_proto)
T = TypeVar("T")


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


def credentials(ep: Endpoint, password: str | None) -> tuple[str, str]:
    """The user and password: password_file (already read), else ~/.netrc; anonymous needs none."""
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


class FtpConnection:
    """One control connection, opened on first use and reopened once per run after a drop."""

    def __init__(
        self,
        endpoint: Endpoint,
        password: str,
        on_connect: Callable[[ftplib.FTP], None],
        *,
        tls_ca: str | None = None,
        tls_verify: bool = True,
        timeout: float = 60.0,
        passive: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.url = endpoint.url
        self._password = password
        self._on_connect = on_connect  # runs after login and CWD, e.g. to make the move folder
        self.tls_ca, self.tls_verify = tls_ca, tls_verify
        self.timeout, self.passive = timeout, passive
        self.ftp: ftplib.FTP | None = None
        self.root = "/"  # absolute path of the queue folder, from PWD
        self.mlsd = True
        self.mlst = False
        self._reconnected = False

    def open(self) -> None:
        """Connect now, so a wrong host or password stops the run before anything is listed."""
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
            self.root = ftp.pwd()
            self._features(ftp)
            self._on_connect(ftp)
        except (*DROPPED, ftplib.Error, ValueError) as e:
            _close(ftp)
            raise SourceUnreachable(self._connect_error(stage, e)) from None
        self.ftp = ftp
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
                f"{where}: login refused for {self.endpoint.user}: {said(e)} (check password_file)"
            )
        if stage == "folder" and isinstance(e, ftplib.error_perm):
            return f"{where}: cannot open the remote folder: {said(e)}"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"{where}: TLS certificate not trusted: {e.verify_message} (set [ftp] tls_ca)"
        if stage == "tls" and isinstance(e, ftplib.Error):
            return f"{where}: server refused explicit TLS (AUTH TLS): {said(e)}"
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
            return f"server said {said(e)}"
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
        self.mlst = self.mlsd = "MLST" in names
        if self.mlsd:
            quietly(ftp.sendcmd, "OPTS MLST " + "".join(f + ";" for f in MLSD_FACTS))

    def _client(self) -> ftplib.FTP:
        return self.ftp if self.ftp is not None else self._connect()

    def call(self, what: str, op: Callable[[ftplib.FTP], T]) -> T:
        """Run `op` on the connection; on a drop, reconnect once per run and try again."""
        try:
            return op(self._client())
        except DROPPED as e:
            self.drop()
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
        except DROPPED as e:
            self.drop()
            raise SourceUnreachable(
                f"{self.url}: connection lost again during {what} ({self._describe(e)})"
            ) from None

    def drop(self) -> None:
        """Forget a broken connection; the next `call` opens a new one."""
        if self.ftp is not None:
            self.ftp.close()
            self.ftp = None

    def close(self) -> None:
        """QUIT politely, then close whatever is left."""
        ftp, self.ftp = self.ftp, None
        if ftp is not None:
            try:
                ftp.quit()
            except (*DROPPED, ftplib.Error):
                pass
            _close(ftp)


def probe_clock(ftp: ftplib.FTP, mlsd: bool) -> float:
    """Seconds to add to our clock for the server's (see the module docstring); -inf if unknown."""
    try:
        ftp.storbinary(f"STOR {PROBE}", io.BytesIO(b""))
        stored = time.time()
        if mlsd:
            server, slack = parse_time_val(ftp.sendcmd(f"MDTM {PROBE}")[4:]), 1.0
        else:
            [line] = split_lines(read_data(ftp, f"LIST {PROBE}"))
            server, slack = parse_list_line(line, stored).mtime, 60.0
        quietly(ftp.delete, PROBE)
    except (ftplib.Error, ValueError) as e:
        log.info("server clock unknown (%s): files settle after two unchanged polls", said(e))
        return float("-inf")
    if server is None:
        log.info("server clock unknown (unreadable probe time): files settle after two polls")
        return float("-inf")
    offset = server - stored - slack
    if abs(offset + slack) > 5:
        log.info("server clock is %+.0f s from ours (measured with %s)", offset + slack, PROBE)
    return offset


def read_data(ftp: ftplib.FTP, cmd: str) -> bytes:
    """A listing's raw bytes (a data connection, RFC 959 §3.2)."""
    buf = bytearray()
    with ftp.transfercmd(cmd) as conn:
        while chunk := conn.recv(CHUNK):
            buf += chunk
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
    ftp.voidresp()
    return bytes(buf)


def said(e: BaseException) -> str:
    """The server's reply as one line, e.g. `530 Login incorrect.`."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def quietly(fn: Callable[[str], Any], arg: str) -> None:
    """Run an FTP command whose refusal (5xx) does not matter, e.g. MKD of an existing folder."""
    try:
        fn(arg)
    except ftplib.error_perm:
        pass


def _close(ftp: ftplib.FTP) -> None:
    try:
        ftp.close()
    except OSError:
        pass
