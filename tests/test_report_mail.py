"""The cleaner's report over real SMTP: STARTTLS + login, SMTPS, refusals, unreachable server."""

from __future__ import annotations

import email
import email.policy

import pytest

from benchsync.report import Report
from conftest import Workspace, md5, sample_log, stored_bytes

PASSWORD_FILE = "smtp.password"


def broken_store(ws: Workspace) -> bytes:
    """A filed log whose stored file was deleted, found by the verifier."""
    data = sample_log(3, 2500)
    (ws.queue / "run.log").write_bytes(data)
    assert ws.run("ftp-sync").code == 0
    (ws.store / md5(data)[:2] / f"{md5(data)}.gz").unlink()
    assert ws.run("verify").code == 1
    return data


def secret(ws: Workspace, value: str, mode: int = 0o600) -> str:
    path = ws.root / PASSWORD_FILE
    path.write_text(value + "\n")
    path.chmod(mode)
    return PASSWORD_FILE


def configure_tls(ws: Workspace, sink, password: str, **extra: str) -> None:
    sink.clear()
    ws.configure(
        mail={
            "smtp_host": "localhost",
            "smtp_port": str(sink.port),
            "smtp_user": sink.user,
            "smtp_password_file": secret(ws, password),
            "tls_ca": str(sink.cafile),
            "from": "benchsync@example.org",
            "to": "ops@example.org, oncall@example.org",
            **extra,
        }
    )


def test_report_goes_through_starttls_and_login(ws_sqlite: Workspace, smtp_tls_sink) -> None:
    ws = ws_sqlite
    configure_tls(ws, smtp_tls_sink, smtp_tls_sink.password, starttls="true")
    data = broken_store(ws)
    assert ws.run("clean").code == 0
    assert stored_bytes(ws.store, md5(data)) == data
    [envelope] = smtp_tls_sink.messages
    assert envelope.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    assert [ok for _, ok in smtp_tls_sink.auth_attempts] == [True]
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert msg["From"] == "benchsync@example.org"
    assert msg["Subject"].endswith("1 repaired, 0 need a person")


def test_report_goes_through_smtps(ws_sqlite: Workspace, smtps_sink) -> None:
    ws = ws_sqlite
    configure_tls(ws, smtps_sink, smtps_sink.password, smtps="true", starttls="false")
    broken_store(ws)
    assert ws.run("clean").code == 0
    assert len(smtps_sink.messages) == 1
    assert "report sent to=ops@example.org,oncall@example.org" in ws.log_text("cleaner")


def test_a_refused_login_is_logged_without_the_password_and_repairs_stand(
    ws_sqlite: Workspace, smtp_tls_sink
) -> None:
    ws = ws_sqlite
    configure_tls(ws, smtp_tls_sink, "Wr0ng-Passw0rd-4711", starttls="true")
    data = broken_store(ws)
    result = ws.run("clean")
    assert result.code == 1
    log = ws.log_text("cleaner")
    assert f"ERROR report not sent: SMTP server localhost:{smtp_tls_sink.port} refused" in log
    assert "Wr0ng-Passw0rd-4711" not in log + result.err
    assert stored_bytes(ws.store, md5(data)) == data
    assert smtp_tls_sink.messages == []


def test_an_unreachable_smtp_server_is_logged_exit_1_and_repairs_are_kept(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    from servers._proc import free_port

    ws.configure(
        mail={
            "smtp_host": "127.0.0.1",
            "smtp_port": str(free_port()),
            "starttls": "false",
            "to": "ops@example.org",
            "timeout": "5",
        }
    )
    data = broken_store(ws)
    result = ws.run("clean")
    assert result.code == 1
    assert "ERROR report not sent: cannot send the report via 127.0.0.1:" in result.err
    assert stored_bytes(ws.store, md5(data)) == data
    assert ws.rows("SELECT resolution FROM discrepancies WHERE kind = 'missing'") == [
        (f"restored from {ws.queue / 'run.log'}",)
    ]
    assert ws.run("verify").code == 0


def test_a_certificate_that_is_not_trusted_stops_the_report(
    ws_sqlite: Workspace, smtp_tls_sink
) -> None:
    ws = ws_sqlite
    configure_tls(ws, smtp_tls_sink, smtp_tls_sink.password, starttls="true")
    del ws.sections["mail"]["tls_ca"]
    ws.configure()
    broken_store(ws)
    result = ws.run("clean")
    assert result.code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in ws.log_text("cleaner")
    assert smtp_tls_sink.auth_attempts == [], "no password sent to an unverified server"


@pytest.mark.parametrize(
    ("mail", "message"),
    [
        ({"smtp_user": "reporter", "starttls": "false"}, "password would cross the network"),
        ({"smtps": "true", "starttls": "true"}, "choose one of smtps"),
        ({"smtp_user": "reporter", "smtp_password_file": "open.password"}, "readable by group"),
    ],
)
def test_unsafe_mail_settings_stop_the_cleaner_before_it_repairs(
    ws_sqlite: Workspace, mail: dict[str, str], message: str
) -> None:
    ws = ws_sqlite
    (ws.root / "open.password").write_text("pw")
    (ws.root / "open.password").chmod(0o644)
    ws.configure(mail={"smtp_host": "127.0.0.1", "to": "ops@example.org", **mail})
    data = broken_store(ws)
    result = ws.run("clean")
    assert result.code == 2
    assert message in result.err
    assert not (ws.store / md5(data)[:2] / f"{md5(data)}.gz").exists()


def test_the_report_puts_counts_first_then_found_done_and_needs_a_person() -> None:
    r = Report()
    r.add_found("missing", "abc: gone")
    r.add_found("parse", "def: parser failed")
    r.done.append("restored from /q/run.log: abc")
    r.add_needs_person("parse", "def: parser failed")
    body = r.body("host1")
    assert body.splitlines()[2:5] == [
        "found:              2",
        "repaired:           1",
        "needs a person:     1",
    ]
    assert (
        body.index("What was found")
        < body.index("What was done")
        < body.index("What needs a person")
    )
    assert "reparse --status failed" in body
    assert r.subject("host1") == "benchsync cleaner on host1: 1 repaired, 1 need a person"
    assert not Report().worth_sending()
