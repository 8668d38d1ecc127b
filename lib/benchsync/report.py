"""The cleaner's email to ops: counts first, then what was found, done, and needs a person.

Sent with smtplib: STARTTLS (RFC 3207) or implicit TLS (RFC 8314, "SMTPS"), then AUTH
(RFC 4954) when `smtp_user` is set. Certificates are verified (`tls_ca` names a private
CA); a password is never sent over a connection that is not encrypted.

    [mail]  smtp_host, smtp_port (587 / 465 with smtps / 25 without TLS),
            starttls = true, smtps = false, smtp_user, smtp_password_file (0600),
            from, to (comma-separated), tls_ca, timeout = 30, repeat_after = 3600
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from .config import Config
from .errors import BenchsyncError, ConfigError

HINTS = {
    "not_filed": "file it by hand (benchsync ingest PATH) or find out why the sync job refuses it",
    "missing": "no source still holds this content: ask the submitter to send it again,"
    " then delete the files row",
    "corrupt": "no source still holds this content: restore the .gz from a backup",
    "orphan": "look at the stored file; remove it or file it by hand",
    "silent_job": "check cron and the job's run log",
    "failing_job": "read the job's run log (benchsync status shows the last error)",
    "parse": "fix the parser, then run: benchsync reparse --status failed",
}


class ReportNotSent(BenchsyncError):
    """The report could not be handed to the SMTP server (the repairs stand; exit 1)."""


@dataclass
class MailSettings:
    """Where and how to send the report, read from `[mail]`."""

    host: str
    port: int
    starttls: bool
    smtps: bool
    user: str | None
    password: str | None
    sender: str
    to: list[str]
    tls_ca: str | None
    timeout: float
    repeat_after: float

    @classmethod
    def from_config(cls, config: Config) -> MailSettings | None:
        """The settings, or None when no report is configured (no smtp_host or to)."""
        s = config.section("mail")
        host, to = s.get("smtp_host"), s.get("to")
        if not host or not to:
            return None
        smtps = s.get_bool("smtps", False)
        starttls = s.get_bool("starttls", not smtps)
        if smtps and starttls:
            raise ConfigError("[mail] choose one of smtps = true (port 465) or starttls = true")
        user = s.get("smtp_user") or None
        if user and not (smtps or starttls):
            raise ConfigError(
                "[mail] smtp_user is set but neither starttls nor smtps is on:"
                " the password would cross the network in clear"
            )
        password = s.get_secret("smtp_password_file")
        if user and password is None:
            raise ConfigError("[mail] smtp_user is set: set smtp_password_file too")
        ca = s.get_path("tls_ca")
        return cls(
            host=host,
            port=s.get_int("smtp_port", 465 if smtps else 587 if starttls else 25),
            starttls=starttls,
            smtps=smtps,
            user=user,
            password=password,
            sender=s.get("from") or f"benchsync@{socket.getfqdn()}",
            to=[a.strip() for a in to.split(",") if a.strip()],
            tls_ca=str(ca) if ca else None,
            timeout=s.get_float("timeout", 30.0),
            repeat_after=s.get_float("repeat_after", 3600.0),
        )


@dataclass
class Report:
    """What the cleaner saw and did in one run, as lines grouped by kind."""

    found: dict[str, list[str]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    needs_person: dict[str, list[str]] = field(default_factory=dict)
    dry_run: bool = False

    def add_found(self, kind: str, line: str) -> None:
        self.found.setdefault(kind, []).append(line)

    def add_needs_person(self, kind: str, line: str) -> None:
        self.needs_person.setdefault(kind, []).append(line)

    @property
    def n_found(self) -> int:
        return sum(map(len, self.found.values()))

    @property
    def n_open(self) -> int:
        return sum(map(len, self.needs_person.values()))

    def worth_sending(self) -> bool:
        """Something was repaired or still needs a person; all well means no email."""
        return bool(self.done or self.needs_person)

    def subject(self, host: str) -> str:
        return (
            f"benchsync cleaner on {host}: {len(self.done)} repaired, {self.n_open} need a person"
        )

    def body(self, host: str) -> str:
        """Counts first, then the three sections."""
        lines = [
            f"benchsync cleaner on {host}"
            + (" (dry run: nothing was changed)" if self.dry_run else ""),
            "",
            f"found:              {self.n_found}",
            f"repaired:           {len(self.done)}",
            f"needs a person:     {self.n_open}",
            "",
            "What was found",
            "--------------",
        ]
        for kind, items in sorted(self.found.items()):
            lines.append(f"{kind} ({len(items)}):")
            lines += [f"  {x}" for x in items]
        if not self.found:
            lines.append("nothing new")
        lines += ["", "What was done", "-------------"]
        lines += [f"  {x}" for x in self.done] or ["nothing"]
        lines += ["", "What needs a person", "-------------------"]
        for kind, items in sorted(self.needs_person.items()):
            lines.append(f"{kind} ({len(items)}): {HINTS.get(kind, '')}")
            lines += [f"  {x}" for x in items]
        if not self.needs_person:
            lines.append("nothing")
        return "\n".join(lines) + "\n"

    def message(self, settings: MailSettings) -> EmailMessage:
        host = socket.gethostname()
        msg = EmailMessage()
        msg["From"] = settings.sender
        msg["To"] = ", ".join(settings.to)
        msg["Subject"] = self.subject(host)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=host)
        msg.set_content(self.body(host))
        return msg


def send(settings: MailSettings, msg: EmailMessage) -> None:
    """Hand the message to the SMTP server; raise ReportNotSent (no secret in it) on failure."""
    ctx = ssl.create_default_context(cafile=settings.tls_ca)
    where = f"{settings.host}:{settings.port}"
    try:
        if settings.smtps:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=ctx
            )
        else:
            conn = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with conn:
            conn.ehlo()
            if settings.starttls:
                conn.starttls(context=ctx)  # RFC 3207; certificate and name verified
                conn.ehlo()
            if settings.user:
                conn.login(settings.user, settings.password or "")  # RFC 4954
            conn.send_message(msg, to_addrs=settings.to)
    except smtplib.SMTPAuthenticationError as e:
        raise ReportNotSent(f"SMTP server {where} refused the login: {e.smtp_code}") from None
    except smtplib.SMTPNotSupportedError as e:
        raise ReportNotSent(f"SMTP server {where}: {e}") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ReportNotSent(f"cannot send the report via {where}: {reason}") from None
