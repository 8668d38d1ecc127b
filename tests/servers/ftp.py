"""FTP/FTPS: pyftpdlib in-process or as a subprocess, and vsftpd via ``start-vsftpd.sh``."""

from __future__ import annotations

import ftplib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._proc import (
    LOOPBACK,
    ServerUnavailable,
    as_root,
    free_port,
    register,
    require_binary,
    start_script,
    tail,
    unregister,
    wait_for_port,
)
from .daemon import Daemon
from .tls import client_ssl_context, make_tls_cert

FTP_PERMS = "elradfmwMT"  # list, retrieve, store, rename, delete, mkdir, chmod, mtime


def _ftp_client(
    host: str, port: int, user: str, password: str, tls: bool, cafile: Path | None, timeout: float
) -> ftplib.FTP:
    if tls:
        assert cafile is not None
        ftp: ftplib.FTP = ftplib.FTP_TLS(context=client_ssl_context(cafile))
    else:
        ftp = ftplib.FTP()
    ftp.connect(host, port, timeout=timeout)
    ftp.login(user, password)
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.prot_p()
    return ftp


class FtpServer:
    """pyftpdlib FTP or explicit FTPS (control and data TLS required) in a background thread.

    The server gets its OWN ``IOLoop`` and is closed from the thread that runs it: sharing the
    process-wide default loop between servers made 1 run in 7 fail with EBADF/EOFError.
    """

    host: str = LOOPBACK
    user: str = "ftpuser"
    password: str = "secret"

    def __init__(
        self,
        home: str | os.PathLike[str],
        tls: bool = False,
        cert: tuple[Path, Path] | None = None,
        user: str = "ftpuser",
        password: str = "secret",
    ) -> None:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer

        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.tls, self.user, self.password = tls, user, password
        self._own_cert_dir: str | None = None
        if tls and cert is None:
            self._own_cert_dir = tempfile.mkdtemp(prefix="ftpcert.")
            cert = make_tls_cert(self._own_cert_dir)
        self.cafile: Path | None = cert[0] if cert else None
        auth = DummyAuthorizer()
        auth.add_user(user, password, str(self.home), perm=FTP_PERMS)
        attrs: dict[str, Any] = {"authorizer": auth, "banner": "benchsync test FTP ready."}
        if tls:
            assert cert is not None
            attrs |= {
                "certfile": str(cert[0]),
                "keyfile": str(cert[1]),
                "tls_control_required": True,
                "tls_data_required": True,
            }
        handler = type("Handler", (TLS_FTPHandler if tls else FTPHandler,), attrs)
        self._server = FTPServer((LOOPBACK, 0), handler, ioloop=IOLoop())
        self.port: int = self._server.socket.getsockname()[1]
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ftp-{self.port}", daemon=True)
        self._thread.start()
        register(self)

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                self._server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        finally:
            self._server.close_all()

    def client(self, timeout: float = 10) -> ftplib.FTP:
        """A logged-in ftplib client (``FTP_TLS`` with ``prot_p()`` when ``tls``)."""
        return _ftp_client(
            self.host, self.port, self.user, self.password, self.tls, self.cafile, timeout
        )

    def stop(self) -> None:
        """Close the server and every open session (idempotent)."""
        unregister(self)
        self._halt.set()
        self._thread.join(5)
        if self._own_cert_dir:
            shutil.rmtree(self._own_cert_dir, ignore_errors=True)


def start_ftp(
    home: str | os.PathLike[str], tls: bool = False, cert: tuple[Path, Path] | None = None
) -> FtpServer:
    """Start an in-process pyftpdlib server (user ftpuser/secret) serving ``home``: <10 ms."""
    try:
        return FtpServer(home, tls=tls, cert=cert)
    except ImportError as exc:
        raise ServerUnavailable(f"pyftpdlib/pyopenssl missing: {exc}") from exc


@dataclass(eq=False)
class FtpProcess:
    """pyftpdlib running as ``python -m pyftpdlib`` in its own process, so it can be SIGKILLed."""

    host: str
    port: int
    user: str
    password: str
    home: Path
    tls: bool
    cafile: Path | None
    proc: subprocess.Popen[bytes]
    log: Path
    _tmp: str | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The server process's pid."""
        return self.proc.pid

    def client(self, timeout: float = 10) -> ftplib.FTP:
        """A logged-in ftplib client (``FTP_TLS`` with ``prot_p()`` when ``tls``)."""
        return _ftp_client(
            self.host, self.port, self.user, self.password, self.tls, self.cafile, timeout
        )

    def kill(self) -> None:
        """SIGKILL the server: the control and any data connection drop mid-transfer."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        """Terminate the server and remove its temp files (idempotent)."""
        unregister(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def start_ftp_subprocess(
    home: str | os.PathLike[str], tls: bool = False, cert: tuple[Path, Path] | None = None
) -> FtpProcess:
    """Start ``python -m pyftpdlib`` (user ftpuser/secret, write access) on a free port: ≈0.3 s."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ftpproc.")
    log = Path(tmp) / "pyftpdlib.log"
    if tls and cert is None:
        cert = make_tls_cert(tmp)
    for _attempt in range(2):
        port = free_port()
        cmd = [sys.executable, "-m", "pyftpdlib", "-i", LOOPBACK, "-p", str(port)]
        cmd += ["-u", "ftpuser", "-P", "secret", "-d", str(home), "-w"]
        if tls:
            assert cert is not None
            cmd += ["--tls", "--certfile", str(cert[0]), "--keyfile", str(cert[1])]
            cmd += ["--tls-control-required", "--tls-data-required"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if wait_for_port(port, timeout=0.1):
                handle = FtpProcess(
                    LOOPBACK, port, "ftpuser", "secret", home, tls, cert[0] if cert else None,
                    proc, log, tmp,
                )  # fmt: skip
                register(handle)
                return handle
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "in use" not in tail(log):
            break
    shutil.rmtree(tmp, ignore_errors=True)
    raise ServerUnavailable(f"python -m pyftpdlib did not start:\n{tail(log)}")


@dataclass(eq=False)
class VsftpdServer(Daemon):
    """vsftpd with a real local account; FTPS is optional (explicit AUTH TLS). No MLSD."""

    host: str
    port: int
    user: str
    password: str
    home: Path
    cafile: Path
    dir: Path
    pid_file = "vsftpd.pid"
    log_file = "vsftpd.log"

    def client(self, tls: bool = False, timeout: float = 10) -> ftplib.FTP:
        """A logged-in ftplib client; ``tls`` uses ``FTP_TLS`` + ``prot_p()``."""
        return _ftp_client(
            self.host, self.port, self.user, self.password, tls, self.cafile, timeout
        )


def start_vsftpd() -> VsftpdServer:
    """Start vsftpd (local account ftptest/secret) on a free port: ≈0.2 s. Root only."""
    require_binary("/usr/sbin/vsftpd", "vsftpd")
    if not as_root():
        raise ServerUnavailable("vsftpd needs root (it logs in a real local account)")
    keeper, info = start_script("vsftpd", "FTPDIR")
    srv = VsftpdServer(
        host=info["FTPHOST"],
        port=int(info["FTPPORT"]),
        user=info["FTPUSER"],
        password=info["FTPPASSWORD"],
        home=Path(info["FTP_HOME"]),
        cafile=Path(info["CAFILE"]),
        dir=Path(info["FTPDIR"]),
        _keeper=keeper,
    )
    register(srv)
    return srv
