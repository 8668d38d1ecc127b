"""`benchsync status`: what ops read first — last runs, health, files, discrepancies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .config import Config
from .db.connection import Database
from .db.runs import files_by_channel, last_runs, last_success, totals

JOB_CHANNELS = {"ftp_sync": "ftp", "scp_sync": "scp", "imap_sync": "imap"}


def expected_jobs(config: Config) -> list[str]:
    """The cron jobs this config runs: a sync job for each configured source."""
    return [
        job
        for job, section in JOB_CHANNELS.items()
        if config.get(section, "source") or (section == "imap" and config.get("imap", "host"))
    ]


def collect(config: Config) -> dict[str, Any]:
    """Gather the status report as plain data (printed as text or JSON)."""
    from .jobs import open_database

    db = open_database(config)
    try:
        return _collect(db, config)
    finally:
        db.close()


def _age_seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()


def _collect(db: Database, config: Config) -> dict[str, Any]:
    stale_after = config.section("status").get_float("stale_after", 900.0)
    runs = {r.job: r for r in last_runs(db)}
    jobs = []
    unhealthy = []
    for job in sorted(set(runs) | set(expected_jobs(config))):
        r = runs.get(job)
        ok_at = last_success(db, job)
        age = _age_seconds(ok_at)
        problem = None
        if r is not None and r.status == "error":
            problem = f"last run failed: {r.detail}"
        elif job in JOB_CHANNELS and (age is None or age > stale_after):
            problem = "silent: no successful run within stale_after"
        if problem and job in expected_jobs(config):
            unhealthy.append(f"{job}: {problem}")
        jobs.append(
            {
                "job": job,
                "last_run": r.__dict__ if r else None,
                "last_success_at": ok_at,
                "problem": problem,
            }
        )
    return {
        "jobs": jobs,
        "files_by_channel": files_by_channel(db),
        "totals": totals(db),
        "open_discrepancies": open_discrepancies(db),
        "unhealthy": unhealthy,
    }


def open_discrepancies(db: Database) -> dict[str, int]:
    """Open discrepancies counted by kind."""
    rows = db.query(
        "SELECT kind, COUNT(*) FROM discrepancies WHERE resolved_run_id IS NULL GROUP BY kind"
    )
    return {r[0]: r[1] for r in rows}


def render(report: dict[str, Any]) -> str:
    """The report as a few aligned lines of text."""
    lines = ["job          last run              status   seen   new   dup  failed  seconds"]
    for j in report["jobs"]:
        r = j["last_run"]
        if r is None:
            lines.append(f"{j['job']:<12} never")
            continue
        seconds = _duration(r["started_at"], r["finished_at"])
        lines.append(
            f"{j['job']:<12} {(r['started_at'] or '')[:19]:<21} {r['status']:<8}"
            f" {r['n_seen']:>5} {r['n_new']:>5} {r['n_dup']:>5} {r['n_failed']:>7} {seconds:>8}"
        )
    t = report["totals"]
    by_channel = ", ".join(f"{k} {v}" for k, v in sorted(report["files_by_channel"].items()))
    lines.append(f"files: {t['files']} ({by_channel or 'none'}); receipts: {t['receipts']}")
    open_d = report["open_discrepancies"]
    lines.append(
        "open discrepancies: "
        + (", ".join(f"{k} {v}" for k, v in sorted(open_d.items())) if open_d else "none")
    )
    for problem in report["unhealthy"]:
        lines.append(f"UNHEALTHY {problem}")
    return "\n".join(lines)


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "-"
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return f"{delta.total_seconds():.1f}"
