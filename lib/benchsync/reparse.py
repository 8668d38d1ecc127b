"""`benchsync reparse` and `benchsync show`: re-read stored files through today's parser.

The store keeps the exact bytes received, so a better parser can be applied to every
log ever filed; each batch of files is one transaction, so a stop half-way loses nothing.
"""

from __future__ import annotations

import logging

from .config import Config
from .db.bench import files_to_reparse, parsed_rows
from .jobs import JobContext, open_database
from .parsing import parse_files
from .pipeline import Counts

BATCH = 100

log = logging.getLogger("benchsync")


def reparse_job(
    ctx: JobContext, all_files: bool, with_status: str | None, md5s: list[str]
) -> Counts:
    """Replace the parsed rows of the chosen files, 100 files a transaction.

    counts.seen = files read, counts.new = files now parsed (fully or partly).
    """
    counts = ctx.counts
    rows = files_to_reparse(ctx.db, all_files, with_status, md5s)
    md5_of = {file_id: md5 for file_id, md5, _, _ in rows}
    for i in range(0, len(rows), BATCH):
        part = rows[i : i + BATCH]
        names = {file_id: name for file_id, _, _, name in part}
        files = [(file_id, md5, size) for file_id, md5, size, _ in part]
        for file_id, result in parse_files(ctx.db, ctx.store, files, names, ctx.dry_run):
            counts.seen += 1
            if result.status in ("parsed", "partial"):
                counts.new += 1
            elif result.status == "failed":
                counts.failed += 1
            verb = "would reparse" if ctx.dry_run else "reparsed"
            log.info(
                "%s md5=%s status=%s runs=%d",
                verb,
                md5_of[file_id],
                result.status,
                len(result.runs),
            )
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
