"""pytest plugin: session-scoped fixtures that run REAL servers on 127.0.0.1.

Loaded by ``tests/conftest.py`` (``pytest_plugins = ["server_fixtures"]``). Servers start lazily,
once per session, and are stopped at session end even when tests fail; a server that cannot
start skips its tests, or fails them under ``BENCHSYNC_REQUIRE_SERVERS=1`` (CI), so nothing is
silently skipped there. ``BENCHSYNC_TEST_PG`` (a libpq URL/DSN) replaces the throwaway
PostgreSQL cluster with an existing server.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import psycopg2
import pytest

from servers._proc import Stoppable
from servers.servers import (
    FtpServer,
    ImapServer,
    PgServer,
    ServerUnavailable,
    SmtpMode,
    SmtpSink,
    SshServer,
    VsftpdServer,
    external_postgres,
    make_tls_cert,
    start_dovecot,
    start_ftp,
    start_postgres,
    start_smtp,
    start_sshd,
    start_vsftpd,
    stop_all,
)

REQUIRE_ENV = "BENCHSYNC_REQUIRE_SERVERS"
PG_ENV = "BENCHSYNC_TEST_PG"
S = TypeVar("S", bound=Stoppable)


def require_or_skip(exc: BaseException | str) -> NoReturn:
    """Skip the test because a server is unavailable, or fail it when CI requires servers.

    The one place that decides, so a missing daemon is never silently skipped in CI.
    """
    reason = f"test server unavailable: {exc}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def running(start: Callable[[], S], unavailable: tuple[type[Exception], ...] = ()) -> Iterator[S]:
    """Start a server with ``start()``, give it to the block, stop it after, even on failure.

    The one shape of every fixture here: a server that cannot start (``ServerUnavailable``, or
    one of ``unavailable``) goes to :func:`require_or_skip`, so all decide alike.
    """
    try:
        srv = start()
    except (ServerUnavailable, *unavailable) as exc:
        require_or_skip(exc)
    try:
        yield srv
    finally:
        srv.stop()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Turn SIGTERM (a CI timeout, a killed run) into KeyboardInterrupt so servers get stopped."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _interrupt)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Backstop: stop anything a fixture teardown did not reach (e.g. after an interrupt)."""
    stop_all()


# --------------------------------------------------------------------------- PostgreSQL


def _start_pg() -> PgServer:
    """The external server if ``BENCHSYNC_TEST_PG`` names one (checked now), else a cluster."""
    url = os.environ.get(PG_ENV)
    if not url:
        return start_postgres()
    srv = external_postgres(url)
    srv.connect().close()  # fail early with a clear reason
    return srv


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server: ``BENCHSYNC_TEST_PG`` if set, else a throwaway cluster (≈0.7 s)."""
    with running(_start_pg, (psycopg2.Error,)) as srv:  # Error: external server unreachable
        yield srv


def _db_name(nodeid: str) -> str:
    """A unique, valid, ≤63-byte database name derived from the test's name."""
    stem = re.sub(r"[^a-z0-9]+", "_", nodeid.rsplit("::", 1)[-1].lower()).strip("_")
    return f"t_{stem[:40]}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty database for this test; dropped (even with open connections) after."""
    name = _db_name(request.node.nodeid)
    if pg_server.pid is None and not pg_server.external:
        pg_server.restart()  # a previous test may have left it killed
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        if pg_server.pid is None and not pg_server.external:
            pg_server.restart()
        pg_server.drop_database(name)


# --------------------------------------------------------------------------- IMAP / SFTP


@pytest.fixture(scope="session")
def imap_server() -> Iterator[ImapServer]:
    """Dovecot: IMAP+STARTTLS and IMAPS, user alice/secret, Maildir (≈0.3 s)."""
    with running(start_dovecot) as srv:
        yield srv


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SshServer]:
    """OpenSSH sshd (SFTP only), key auth, host key to pin (≈0.2 s)."""
    with running(start_sshd) as srv:
        yield srv


# --------------------------------------------------------------------------- FTP / SMTP


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One self-signed ``(cert, key)`` for localhost/127.0.0.1 shared by in-process servers."""
    return make_tls_cert(tmp_path_factory.mktemp("tls"))


def _ftp(
    tmp_path_factory: pytest.TempPathFactory, tls: bool, cert: tuple[Path, Path]
) -> Iterator[FtpServer]:
    home = tmp_path_factory.mktemp("ftps-home" if tls else "ftp-home")
    with running(lambda: start_ftp(home, tls=tls, cert=cert)) as srv:
        yield srv


@pytest.fixture(scope="session", params=["ftp", "ftps"])
def ftp_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: tuple[Path, Path],
) -> Iterator[FtpServer]:
    """pyftpdlib, once plain and once FTPS: a test using it runs against both."""
    yield from _ftp(tmp_path_factory, request.param == "ftps", tls_cert)


@pytest.fixture(scope="session")
def ftps_server(
    tmp_path_factory: pytest.TempPathFactory, tls_cert: tuple[Path, Path]
) -> Iterator[FtpServer]:
    """pyftpdlib with explicit FTPS only (TLS required on control and data)."""
    yield from _ftp(tmp_path_factory, True, tls_cert)


@pytest.fixture(scope="session")
def vsftpd_server() -> Iterator[VsftpdServer]:
    """vsftpd (no MLSD), local account ftptest/secret; needs root and /usr/sbin/vsftpd."""
    with running(start_vsftpd) as srv:
        yield srv


def _smtp(mode: SmtpMode, cert: tuple[Path, Path] | None) -> Iterator[SmtpSink]:
    with running(lambda: start_smtp(mode, cert=cert)) as sink:
        yield sink


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """Plain SMTP sink (no TLS, no auth); ``.messages`` collects envelopes."""
    yield from _smtp("plain", None)


@pytest.fixture(scope="session")
def smtp_tls_sink(tls_cert: tuple[Path, Path]) -> Iterator[SmtpSink]:
    """SMTP sink requiring STARTTLS, then AUTH LOGIN/PLAIN as reporter/pw."""
    yield from _smtp("starttls", tls_cert)


@pytest.fixture(scope="session")
def smtps_sink(tls_cert: tuple[Path, Path]) -> Iterator[SmtpSink]:
    """SMTP sink with implicit TLS (port-465 style), AUTH as reporter/pw."""
    yield from _smtp("tls", tls_cert)
