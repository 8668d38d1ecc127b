"""`benchsync status`: what ops read first — last runs, job health, files, discrepancies.

Job health is decided here once and used by the verifier too: a cron job is *silent*
when it has no successful run (status ok or failed — it ran, some items may have
failed) finished within `[status] stale_after` seconds (default 900: three 5-minute
polls), and *failing* when its last `[status] failing_runs` finished runs (default 3)
all ended `failed` or `error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .db.connection import Database
from .db.discrepancies import open_by_kind
from .db.runs import (
    RunRow,
    files_by_channel,
    files_by_parse_status,
    last_runs,
    last_success,
    recent_runs,
    totals,
)

JOB_CHANNELS = {"ftp_sync": "ftp", "scp_sync": "scp", "imap_sync": "imap"}
SILENT = "silent_job"
FAILING = "failing_job"


@dataclass
class Health:
    """Why a job needs a person: `kind` is silent_job or failing_job."""

    kind: str
    detail: str


def expected_jobs(config: Config) -> list[str]:
    """The cron jobs this config runs: a sync job for each configured source."""
    return [
        job
        for job, section in JOB_CHANNELS.items()
        if config.get(section, "source") or (section == "imap" and config.get("imap", "host"))
    ]


def _age_seconds(iso: str | None, now: datetime) -> float | None:
    if not iso:
        return None
    return (now - datetime.fromisoformat(iso)).total_seconds()


def job_health(
    db: Database, config: Config, job: str, now: datetime | None = None
) -> Health | None:
    """None when `job` is healthy, else whether it is silent or failing and why."""
    section = config.section("status")
    stale_after = section.get_float("stale_after", 900.0)
    failing_runs = max(1, section.get_int("failing_runs", 3))
    now = now or datetime.now(UTC)
    finished = [r for r in recent_runs(db, job, failing_runs + 5) if r.finished_at][:failing_runs]
    if len(finished) == failing_runs and all(r.status in ("failed", "error") for r in finished):
        why = finished[0].detail or finished[0].status
        return Health(FAILING, f"last {failing_runs} runs failed, latest: {why}")
    ok_at = last_success(db, job)
    age = _age_seconds(ok_at, now)
    if age is None:
        return Health(SILENT, "no successful run yet")
    if age > stale_after:
        return Health(
            SILENT,
            f"no successful run for {_human(age)} (since {ok_at[:19]}Z;"
            f" stale_after = {stale_after:g} s)",
        )
    return None


def collect(config: Config) -> dict[str, Any]:
    """Gather the status report as plain data (printed as text or JSON)."""
    from .jobs import open_database

    db = open_database(config)
    try:
        return _collect(db, config)
    finally:
        db.close()


def _run_dict(r: RunRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "host": r.host,
        "pid": r.pid,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "seconds": _seconds(r.started_at, r.finished_at),
        "status": r.status,
        "counts": {
            "seen": r.n_seen,
            "new": r.n_new,
            "dup": r.n_dup,
            "failed": r.n_failed,
            "skipped": r.n_skipped,
        },
        "detail": r.detail,
        "log_path": r.log_path,
    }


def _collect(db: Database, config: Config) -> dict[str, Any]:
    now = datetime.now(UTC)
    runs = {r.job: r for r in last_runs(db)}
    expected = expected_jobs(config)
    jobs, unhealthy = [], []
    for job in sorted(set(runs) | set(expected)):
        r = runs.get(job)
        health = job_health(db, config, job, now) if job in expected else None
        if health:
            unhealthy.append(f"{job}: {health.detail}")
        jobs.append(
            {
                "job": job,
                "expected": job in expected,
                "last_run": _run_dict(r) if r else None,
                "last_success_at": last_success(db, job),
                "problem": {"kind": health.kind, "detail": health.detail} if health else None,
            }
        )
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "jobs": jobs,
        "files_by_channel": files_by_channel(db),
        "totals": totals(db),
        "files_by_parse_status": files_by_parse_status(db),
        "open_discrepancies": open_by_kind(db),
        "unhealthy": unhealthy,
    }


def render(report: dict[str, Any]) -> str:
    """The report as a few aligned lines of text."""
    lines = [
        f"{'job':<12} {'last run (UTC)':<20} {'took':>7} {'status':<8}"
        f" {'seen':>6} {'new':>5} {'dup':>5} {'failed':>6}  health"
    ]
    for j in report["jobs"]:
        r = j["last_run"]
        health = j["problem"]["kind"] if j["problem"] else ("ok" if j["expected"] else "-")
        if r is None:
            lines.append(f"{j['job']:<12} {'never':<20} {'-':>7} {'-':<8}" + " " * 27 + health)
            continue
        c = r["counts"]
        took = "-" if r["seconds"] is None else f"{r['seconds']:.1f}s"
        lines.append(
            f"{j['job']:<12} {(r['started_at'] or '')[:19]:<20} {took:>7} {r['status']:<8}"
            f" {c['seen']:>6} {c['new']:>5} {c['dup']:>5} {c['failed']:>6}  {health}"
        )
    t = report["totals"]
    by_channel = ", ".join(f"{k} {v}" for k, v in sorted(report["files_by_channel"].items()))
    lines.append(f"files: {t['files']} ({by_channel or 'none'}); receipts: {t['receipts']}")
    parsed = report["files_by_parse_status"]
    if parsed:
        lines.append("parsed: " + ", ".join(f"{k} {v}" for k, v in sorted(parsed.items())))
    open_d = report["open_discrepancies"]
    lines.append(
        "open discrepancies: "
        + (", ".join(f"{k} {v}" for k, v in sorted(open_d.items())) if open_d else "none")
    )
    for problem in report["unhealthy"]:
        lines.append(f"UNHEALTHY {problem}")
    return "\n".join(lines)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def _human(seconds: float) -> str:
    """'2 h 5 min' style, for detail lines a person reads."""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} days"
