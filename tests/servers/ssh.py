"""SFTP: OpenSSH sshd with key auth, started by ``start-sshd.sh``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._proc import register, require_binary, start_script
from .daemon import Daemon

if TYPE_CHECKING:
    import paramiko


@dataclass(eq=False)
class SshServer(Daemon):
    """OpenSSH sshd offering only SFTP, key auth for ``user`` with ``client_key``.

    Pin the server with ``known_hosts_file`` (``[127.0.0.1]:PORT ssh-ed25519 ...``) or
    ``host_key()``; SFTP sessions start in ``home``, so relative paths land there. ``kill()``
    breaks transfers mid-stream; ``stop()`` keeps a caller-given ``home``.
    """

    host: str
    port: int
    user: str
    client_key: Path
    host_pub: Path
    known_hosts_file: Path
    home: Path
    dir: Path
    pid_file = "sshd.pid"
    log_file = "sshd.log"

    def host_key(self) -> paramiko.PKey:
        """The server's public host key as a paramiko key, for pinning."""
        import base64

        import paramiko

        ktype, b64 = self.host_pub.read_text().split()[:2]
        return paramiko.PKey.from_type_string(ktype, base64.b64decode(b64))


def start_sshd(home: str | os.PathLike[str] | None = None, user: str | None = None) -> SshServer:
    """Start sshd on a free port: ≈0.2 s.

    ``home`` (kept on stop) is where SFTP sessions start; default: a fresh DIR/home with an
    empty ``outbox/``. ``user`` defaults to root (as root) or the invoking user.
    """
    require_binary("/usr/sbin/sshd", "openssh-server")
    env = {}
    if home is not None:
        env["SFTP_HOME"] = str(Path(home).resolve())
    if user is not None:
        env["SFTPUSER"] = user
    keeper, info = start_script("sshd", "SSHDIR", env)
    srv = SshServer(
        host=info["SSHHOST"],
        port=int(info["SSHPORT"]),
        user=info["SSHUSER"],
        client_key=Path(info["CLIENT_KEY"]),
        host_pub=Path(info["HOST_PUB"]),
        known_hosts_file=Path(info["KNOWN_HOSTS"]),
        home=Path(info["SFTP_HOME"]),
        dir=Path(info["SSHDIR"]),
        _keeper=keeper,
    )
    register(srv)
    return srv
