"""`benchsync reparse` and `benchsync show`: re-read stored files through today's parser.

The store keeps the exact bytes received, so a better parser can be applied to every
log ever filed; each file is one transaction, so a stop half-way loses nothing.
"""

from __future__ import annotations

import logging

from .analyze import analyze
from .config import Config
from .db.bench import files_to_reparse, parsed_rows, save_parse, set_parse_status
from .jobs import JobContext, open_database
from .pipeline import Counts
from .store import KEEP_RAW

log = logging.getLogger("benchsync")


def reparse_job(
    ctx: JobContext, all_files: bool, with_status: str | None, md5s: list[str]
) -> Counts:
    """Replace the parsed rows of the chosen files; counts.new = files now parsed."""
    counts = ctx.counts
    for file_id, md5, name in files_to_reparse(ctx.db, all_files, with_status, md5s):
        counts.seen += 1
        try:
            raw = ctx.store.read(md5)
        except (OSError, ValueError) as e:
            counts.failed += 1
            log.warning("reparse failed md5=%s reason=stored file unreadable: %s", md5, e)
            continue
        result = analyze(raw if len(raw) <= KEEP_RAW else None, name)
        if ctx.dry_run:
            log.info("would reparse md5=%s status=%s", md5, result.status)
            continue
        with ctx.db.transaction():
            save_parse(ctx.db, file_id, result)
            set_parse_status(ctx.db, file_id, result.status, result.reason)
        if result.status in ("parsed", "partial"):
            counts.new += 1
        log.info("reparsed md5=%s status=%s runs=%d", md5, result.status, len(result.runs))
    missing = set(md5s) - {r[1] for r in files_to_reparse(ctx.db, False, None, md5s)}
    for md5 in sorted(missing):
        counts.failed += 1
        log.warning("reparse failed md5=%s reason=no such file", md5)
    return counts


def show_file(config: Config, md5: str) -> str:
    """A readable account of one file: receipts, parse status, runs and per-model results."""
    db = open_database(config)
    try:
        rows = parsed_rows(db, md5.lower())
    finally:
        db.close()
    if rows is None:
        from .errors import BenchsyncError

        raise BenchsyncError(f"no file with md5 {md5}")
    f = rows["file"]
    out = [
        f"md5 {f[1]}  size {f[2]}  stored {f[3]}",
        f"first seen {f[4]}  parse {f[5]}" + (f" ({f[6]})" if f[6] else ""),
    ]
    for channel, source, item, name, submitter, at in rows["receipts"]:
        who = f" from {submitter}" if submitter else ""
        out.append(f"received {at} via {channel} {source} item {item} as {name}{who}")
    for run in rows["runs"]:
        run_id, kind, host, cpu, cores, version, date, procs, mean, vgr, metric, complete = run
        out.append(
            f"run ({kind}) host {host} cpu {cpu} cores {cores} BRL-CAD {version} date {date}"
            f" processors {procs} mean rays/s {mean} mean vgr {vgr} VGR {metric}"
            + ("" if complete else " [incomplete]")
        )
        for model, rays, ratio, cpu_s, wall_s, verdict in rows["results"][run_id]:
            out.append(
                f"  {model:<9} rays/s {rays}  vgr {ratio}  cpu {cpu_s}  wall {wall_s}"
                + (f"  {verdict}" if verdict else "")
            )
    return "\n".join(out)
