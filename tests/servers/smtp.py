"""SMTP: an aiosmtpd sink (plain, STARTTLS + AUTH, implicit TLS) that collects messages."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._proc import LOOPBACK, ServerUnavailable, free_port, register, unregister
from .tls import client_ssl_context, make_tls_cert

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import Envelope

SmtpMode = Literal["plain", "starttls", "tls"]


class _Collector:
    """aiosmtpd handler that keeps every accepted envelope."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


class SmtpSink:
    """aiosmtpd sink that collects messages in ``messages`` (aiosmtpd ``Envelope`` objects).

    ``mode``: ``plain`` (no TLS, no auth), ``starttls`` (STARTTLS required, then AUTH
    LOGIN/PLAIN as ``user``/``password``), ``tls`` (implicit TLS, AUTH available).
    """

    host: str = LOOPBACK

    def __init__(
        self,
        mode: SmtpMode = "plain",
        cert: tuple[Path, Path] | None = None,
        user: str = "reporter",
        password: str = "pw",
    ) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.mode, self.user, self.password = mode, user, password
        self._own_cert_dir: str | None = None
        if mode != "plain" and cert is None:
            self._own_cert_dir = tempfile.mkdtemp(prefix="smtpcert.")
            cert = make_tls_cert(self._own_cert_dir)
        self.cafile: Path | None = cert[0] if cert else None
        self._handler = _Collector()
        self.messages = self._handler.messages
        self.auth_attempts: list[tuple[str, bool]] = []

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                user.encode(),
                password.encode(),
            )
            self.auth_attempts.append((mechanism, ok))
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends 535

        kwargs: dict[str, Any] = {}
        if mode != "plain":
            assert cert is not None
            srv_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            srv_ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            kwargs["authenticator"] = authenticator
            if mode == "starttls":
                kwargs |= {
                    "tls_context": srv_ctx,
                    "require_starttls": True,
                    "auth_require_tls": True,
                }
            else:
                # the whole session is TLS; aiosmtpd only counts STARTTLS as "TLS" for AUTH
                kwargs |= {"ssl_context": srv_ctx, "auth_require_tls": False}
        last: Exception | None = None
        for _attempt in range(3):  # Controller(port=0) is unsupported: pick one, retry on a race
            self.port = free_port()
            self._ctl: Controller = Controller(
                self._handler, hostname=LOOPBACK, port=self.port, ready_timeout=10, **kwargs
            )
            try:
                self._ctl.start()
                break
            except (OSError, RuntimeError, TimeoutError) as exc:  # re-raised from its thread
                last = exc
        else:
            raise ServerUnavailable(f"aiosmtpd did not start: {last!r}")
        register(self)

    def ssl_context(self) -> ssl.SSLContext:
        """Client context that verifies the sink's self-signed cert."""
        assert self.cafile is not None, "plain sink has no TLS"
        return client_ssl_context(self.cafile)

    def clear(self) -> None:
        """Forget collected messages (the sink is shared by a whole session)."""
        self.messages.clear()
        self.auth_attempts.clear()

    def stop(self) -> None:
        """Stop the controller thread (idempotent)."""
        unregister(self)
        with contextlib.suppress(Exception):
            self._ctl.stop()
        if self._own_cert_dir:
            shutil.rmtree(self._own_cert_dir, ignore_errors=True)
            self._own_cert_dir = None


def start_smtp(mode: SmtpMode = "plain", cert: tuple[Path, Path] | None = None) -> SmtpSink:
    """Start an in-process SMTP sink (AUTH user reporter/pw where TLS is on): ≈10 ms."""
    try:
        return SmtpSink(mode, cert=cert)
    except ImportError as exc:
        raise ServerUnavailable(f"aiosmtpd missing: {exc}") from exc
