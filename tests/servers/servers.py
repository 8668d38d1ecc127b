"""Start and stop real servers on 127.0.0.1 for tests and benchmarks: the public API.

Plain Python, no pytest: the pytest fixtures (``tests/server_fixtures.py``) and benchmark scripts
share it. Daemons (PostgreSQL, Dovecot, sshd, vsftpd) are started by the ``start-*.sh`` scripts
next to this file (usable by hand too) under a keeper process that owns and reaps them; FTP
(pyftpdlib) and SMTP (aiosmtpd) run in-process, or pyftpdlib as a subprocess when a test must
SIGKILL it.

Every start function returns a handle with everything a client needs and ``stop()``; it raises
:class:`ServerUnavailable` (with the server's log tail) when the binary is missing or the server
does not come up. Live handles are also stopped at interpreter exit, and a keeper kills its
server by itself when the test process dies, so no daemon outlives the run.
"""

from ._proc import LOOPBACK, ServerUnavailable, free_port, stop_all, wait_for_port
from .ftp import (
    FtpProcess,
    FtpServer,
    VsftpdServer,
    start_ftp,
    start_ftp_subprocess,
    start_vsftpd,
)
from .imap import ImapServer, start_dovecot
from .postgres import PgServer, external_postgres, start_postgres
from .smtp import SmtpMode, SmtpSink, start_smtp
from .ssh import SshServer, start_sshd
from .tls import client_ssl_context, make_tls_cert

__all__ = [
    "LOOPBACK",
    "FtpProcess",
    "FtpServer",
    "ImapServer",
    "PgServer",
    "ServerUnavailable",
    "SmtpMode",
    "SmtpSink",
    "SshServer",
    "VsftpdServer",
    "client_ssl_context",
    "external_postgres",
    "free_port",
    "make_tls_cert",
    "start_dovecot",
    "start_ftp",
    "start_ftp_subprocess",
    "start_postgres",
    "start_smtp",
    "start_sshd",
    "start_vsftpd",
    "stop_all",
    "wait_for_port",
]
