"""IMAP: Dovecot 2.3 with a Maildir user, started by ``start-dovecot.sh``."""

from __future__ import annotations

import os
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from ._proc import register, require_binary, start_script
from .daemon import Daemon
from .tls import client_ssl_context

DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"


@dataclass(eq=False)
class ImapServer(Daemon):
    """Dovecot with IMAP (+STARTTLS) on ``port`` and IMAPS on ``ssl_port``, one Maildir user.

    Folders are Maildir++ with separator ``.``; CREATE, MOVE (RFC 6851) and UIDPLUS (RFC 4315)
    work. Verify TLS with ``cafile`` (self-signed, SAN localhost + 127.0.0.1).
    """

    host: str
    port: int
    ssl_port: int
    user: str
    password: str
    cafile: Path
    maildir: Path
    conf: Path
    dir: Path
    separator: str = "."
    pid_file = "run/master.pid"
    log_file = "dovecot.log"

    def ssl_context(self) -> ssl.SSLContext:
        """Client context that verifies the server against ``cafile``."""
        return client_ssl_context(self.cafile)

    def folder_path(self, folder: str = "INBOX") -> Path:
        """On-disk Maildir of an IMAP folder (Maildir++: ``a.b`` lives in ``.a.b``)."""
        return self.maildir if folder.upper() == "INBOX" else self.maildir / f".{folder}"

    def deliver(self, msg: bytes | Message, folder: str = "INBOX") -> Path:
        """Drop a message into the Maildir as an MTA would (write tmp/, rename into new/).

        Fast and independent of Dovecot's delivery path. Files get the mail user's ownership so
        Dovecot can flag/move/expunge them; a missing folder is created. Return the file path.
        """
        data = msg if isinstance(msg, bytes) else msg.as_bytes()
        box = self.folder_path(folder)
        st = self.maildir.stat()
        for sub in ("cur", "new", "tmp"):
            if not (box / sub).is_dir():
                (box / sub).mkdir(parents=True)
                os.chown(box / sub, st.st_uid, st.st_gid)
        if box != self.maildir:
            os.chown(box, st.st_uid, st.st_gid)
        name = f"{time.time_ns()}.M{os.getpid()}P{threading.get_ident()}.benchsync-test"
        tmp = box / "tmp" / name
        tmp.write_bytes(data)
        os.chown(tmp, st.st_uid, st.st_gid)
        final = box / "new" / name
        tmp.rename(final)
        return final

    def lda(self, msg: bytes | Message, folder: str | None = None, sender: str = "") -> None:
        """Deliver through ``dovecot-lda``, Dovecot's own delivery (updates its indexes).

        Raise ``RuntimeError`` with LDA's output and the log tail when it rejects the message.
        """
        data = msg if isinstance(msg, bytes) else msg.as_bytes()
        require_binary(DOVECOT_LDA, "dovecot-core")
        cmd = [DOVECOT_LDA, "-c", str(self.conf), "-d", self.user]
        cmd += ["-f", sender or "sender@example.com"]
        if folder:
            cmd += ["-m", folder]
        res = subprocess.run(cmd, input=data, capture_output=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(
                f"dovecot-lda exit {res.returncode}: {res.stderr.decode(errors='replace')}"
                f"\n{self.log_tail()}"
            )


def start_dovecot() -> ImapServer:
    """Start Dovecot (user alice/secret) on two free ports: ≈0.3 s."""
    require_binary("/usr/sbin/dovecot", "dovecot-imapd")
    keeper, info = start_script("dovecot", "IMAPDIR")
    srv = ImapServer(
        host=info["IMAPHOST"],
        port=int(info["IMAPPORT"]),
        ssl_port=int(info["IMAPSPORT"]),
        user=info["IMAPUSER"],
        password=info["IMAPPASSWORD"],
        cafile=Path(info["CAFILE"]),
        maildir=Path(info["MAILDIR"]),
        conf=Path(info["CONF"]),
        dir=Path(info["IMAPDIR"]),
        _keeper=keeper,
    )
    register(srv)
    return srv
