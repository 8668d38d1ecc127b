"""One SSH connection for the SFTP source: host key checked, key auth, fast socket.

Host keys are checked against an OpenSSH `known_hosts` file (RFC 4251 §4.1: the client
must verify the server's host key); an unknown or changed key refuses the connection
unless `accept_new_host_key` is set, and even then only an unknown key is accepted
(like OpenSSH's `StrictHostKeyChecking=accept-new`), logged and saved.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..config import Section
from ..errors import ConfigError, SourceUnreachable

log = logging.getLogger("benchsync")


@dataclass
class SshOptions:
    """Where and how to log in; built from the `[scp]` section, secrets already read."""

    host: str
    port: int
    user: str
    known_hosts: Path
    accept_new_host_key: bool = False
    pkey: paramiko.PKey | None = None
    key_file: Path | None = None
    use_agent: bool = False
    password: str | None = None
    timeout: float = 30.0
    keepalive: int = 30

    @classmethod
    def from_section(cls, section: Section, host: str, port: int, user: str) -> SshOptions:
        """Read auth and host key settings; ConfigError (exit 2) for anything unusable."""
        key_file = section.get_path("key_file")
        passphrase = section.get_secret("passphrase_file")
        opts = cls(
            host=host,
            port=port,
            user=user,
            known_hosts=section.get_path("known_hosts") or Path("~/.ssh/known_hosts").expanduser(),
            accept_new_host_key=section.get_bool("accept_new_host_key", False),
            key_file=key_file,
            use_agent=section.get_bool("use_agent", False),
            password=section.get_secret("password_file"),
            timeout=section.get_float("timeout", 30.0),
            keepalive=section.get_int("keepalive", 30),
        )
        if key_file is not None:
            opts.pkey = load_key(key_file, passphrase)
        elif not (opts.use_agent or opts.password):
            raise ConfigError(
                f"[{section.name}] no way to log in: set key_file (or use_agent = true, "
                "or password_file)"
            )
        return opts

    @property
    def host_entry(self) -> str:
        """The host as `known_hosts` names it: `host`, or `[host]:port` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def load_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    """Load an ed25519, ECDSA or RSA private key, refusing one others can read (as ssh does)."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError(f"cannot read key_file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"refusing key_file {path}: readable by group or others (run: chmod 600 {path})"
        )
    password = passphrase.encode() if passphrase is not None else None
    try:
        return paramiko.PKey.from_path(path, password)
    except TypeError:
        raise ConfigError(f"key_file {path} is encrypted: set passphrase_file") from None
    except (ValueError, paramiko.SSHException) as e:
        if password is not None:
            raise ConfigError(f"cannot decrypt key_file {path}: wrong passphrase?") from None
        raise ConfigError(f"key_file {path} is not a usable private key: {e}") from None
    except Exception as e:  # noqa: BLE001 - cryptography's UnsupportedAlgorithm and kin
        raise ConfigError(f"key_file {path} is not a usable private key: {e}") from None


def describe(key: paramiko.PKey) -> str:
    """`ssh-ed25519 SHA256:…`, the way `ssh` shows a key's fingerprint."""
    return f"{key.get_name()} {key.fingerprint}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key, or accept, log and save it when told to."""

    def __init__(self, opts: SshOptions) -> None:
        self.opts = opts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key) -> None:
        where = self.opts.known_hosts
        if not self.opts.accept_new_host_key:
            raise SourceUnreachable(
                f"host key of {hostname} is not in {where} (server offered {describe(key)}): "
                f"refusing to connect; check the fingerprint with the host's admin, then add it "
                f"(ssh-keyscan -p {self.opts.port} {self.opts.host} >> {where}) or set "
                "accept_new_host_key = true for one run"
            )
        save_host_key(where, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "accepted new host key for %s: %s (saved to %s)", hostname, describe(key), where
        )


def save_host_key(path: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append one `known_hosts` line (never rewrite the file: keep others' comments)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
    except OSError as e:
        raise SourceUnreachable(f"cannot save the host key to {path}: {e.strerror}") from None


def _load_known_hosts(client: paramiko.SSHClient, path: Path) -> None:
    if not path.exists():
        return  # nothing known: every host is unknown
    try:
        client.get_host_keys().load(str(path))
    except (OSError, UnicodeDecodeError, paramiko.SSHException) as e:
        raise ConfigError(f"cannot read known_hosts {path}: {e}") from None


def connect(opts: SshOptions, url: str) -> paramiko.SSHClient:
    """Open the run's one SSH connection; SourceUnreachable (exit 3) when it cannot be had."""
    client = paramiko.SSHClient()
    _load_known_hosts(client, opts.known_hosts)
    client.set_missing_host_key_policy(_HostKeyPolicy(opts))
    try:
        sock = socket.create_connection((opts.host, opts.port), timeout=opts.timeout)
    except OSError as e:
        raise SourceUnreachable(f"cannot connect to {url}: {e.strerror or e}") from None
    # paramiko waits ~40 ms per request on Nagle + delayed ACK without this (perf-notes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        client.connect(
            opts.host,
            port=opts.port,
            username=opts.user,
            pkey=opts.pkey,
            password=opts.password,
            sock=sock,
            timeout=opts.timeout,
            banner_timeout=opts.timeout,
            auth_timeout=opts.timeout,
            channel_timeout=opts.timeout,
            allow_agent=opts.use_agent,
            look_for_keys=False,
        )
    except SourceUnreachable:
        _close(client, sock)
        raise
    except paramiko.BadHostKeyException as e:
        _close(client, sock)
        raise SourceUnreachable(
            f"host key of {opts.host_entry} CHANGED: {opts.known_hosts} has "
            f"{describe(e.expected_key)}, the server offered {describe(e.key)}; refusing to "
            "connect (someone may be intercepting the connection). If the host really got a "
            f"new key, remove the old one (ssh-keygen -R '{opts.host_entry}' -f "
            f"{opts.known_hosts}) and add the new one"
        ) from None
    except paramiko.AuthenticationException:
        _close(client, sock)
        how = f"key_file {opts.key_file}" if opts.key_file else "the configured credentials"
        raise SourceUnreachable(
            f"{url}: the server refused {how} for user {opts.user!r} "
            "(is the public key in the user's authorized_keys?)"
        ) from None
    except (paramiko.SSHException, EOFError, OSError) as e:
        _close(client, sock)
        raise SourceUnreachable(f"SSH to {url} failed: {e or type(e).__name__}") from None
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(opts.keepalive)
    return client


def _close(client: paramiko.SSHClient, sock: socket.socket) -> None:
    client.close()
    sock.close()
