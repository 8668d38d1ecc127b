"""Historical result tables in troff/tbl markup (`doc/benchmark.tr`, 1987–1995).

Each `RELEASE x.y STATISTICS (date)` section holds a tab-separated table between `.TS` and
`.TE`. Its header row names the columns (`A/*  H/W  Moss  World  Star  Bldg  [M35]  Mean
S/W Notes|CPU`). Rows come in pairs, `Abs|Rays <host> <rays/s…>` then `*vgr <host>
<ratios…>`; `-` marks a model not run, `?` a missing mean, `\\(dg` a wrong answer.
The Release 4.4 table has one row per run without the `A/*` column; its `vgr` row reads
1.0 everywhere, so its numbers are ratios to VGR and are stored as `vgr_ratio`.
"""

from __future__ import annotations

import re

from .model import BenchRun, Machine, clip, iso_date, processors_from_args, to_int
from .summary import (
    NO_VALUE,
    NOT_RUN,
    apply_abs,
    apply_vgr,
    cell,
    is_summary_line,
    split_summary_line,
)

_RELEASE = re.compile(r"^RELEASE\s+(\d+(?:\.\d+)*)\s+STATISTICS(?:\s*\(([^)]*)\))?")
_COLUMNS = {
    "a/*": "tag",
    "h/w": "host",
    "moss": "moss",
    "world": "world",
    "star": "star",
    "bldg": "bldg391",
    "bldg391": "bldg391",
    "m35": "m35",
    "sphflake": "sphflake",
    "mean": "mean",
    "cpu": "cpu",
    "s/w notes": "notes",
}


def looks_like_table(text: str) -> bool:
    """Cheap check for tbl markup holding benchmark rows."""
    return ".TS" in text and ("\t*vgr" in text or "\n*vgr\t" in text or "H/W\tMoss" in text)


class TableParser:
    """Walks the troff document, tracking the current release and column layout."""

    def __init__(self) -> None:
        self.runs: list[BenchRun] = []
        self.release: str | None = None
        self.date: str | None = None
        self.columns: list[str] | None = None
        self.pending: BenchRun | None = None

    def feed(self, line: str) -> None:
        """Take one line (no newline) of the document."""
        if line.startswith("RELEASE"):
            match = _RELEASE.match(line)
            if match:
                self.release, self.date = match.group(1), clip(match.group(2))
        elif line.startswith(".TE"):
            self._drop_pending()
            self.columns = None
        elif "\t" not in line or line.startswith((".", "_", "\\")):
            return
        elif "H/W" in line and "Moss" in line:
            self.columns = [_COLUMNS.get(c.strip().lower(), "?") for c in line.split("\t")]
        elif self.columns is not None:
            self._row(line.split("\t"))
        elif is_summary_line(line):
            self._loose(line)

    def _row(self, cells: list[str]) -> None:
        row = dict(zip(self.columns or [], (c.strip() for c in cells), strict=False))
        tag = row.get("tag")
        if tag == "*vgr" and self.pending is not None:
            run, self.pending = self.pending, None
            self._fill(run, row, "vgr_ratio")
            run.complete = True
            run.mean_vgr = cell(row.get("mean", "?"))[0]
            _add_trailing(run, row.get("notes") or row.get("cpu"))
        elif tag in ("Abs", "Rays"):
            self._drop_pending()
            self.pending = self._new_run(row)
            self._fill(self.pending, row, "rays_per_sec")
            self.pending.mean_rays_per_sec = cell(row.get("mean", "?"))[0]
            self.pending.complete = False
        elif tag is None and row.get("host") and "mean" in row:
            run = self._new_run(row)
            self._fill(run, row, "vgr_ratio")
            run.mean_vgr = cell(row["mean"])[0]
            run.note("Release 4.4 table: values are ratios to VGR")

    def _new_run(self, row: dict[str, str]) -> BenchRun:
        run = BenchRun(kind="table", machine=Machine(hostname=clip(row.get("host"))))
        run.brlcad_version, run.run_date, run.run_at = self.release, self.date, iso_date(self.date)
        notes = clip(row.get("notes"), 500)
        if notes:
            run.note(notes)
            if notes.startswith("-"):
                run.rt_args = notes
        run.processors = to_int(row.get("cpu")) or processors_from_args(run.rt_args)
        self.runs.append(run)
        return run

    def _fill(self, run: BenchRun, row: dict[str, str], attr: str) -> None:
        for column in self.columns or []:
            token = row.get(column)
            if column not in _COLUMNS.values() or column in ("tag", "host", "mean", "cpu", "notes"):
                continue
            if token is None or token in (NOT_RUN, NO_VALUE, ""):
                continue
            value, verdict = cell(token)
            res = run.result(column)
            setattr(res, attr, value)
            res.verdict = verdict or res.verdict

    def _drop_pending(self) -> None:
        if self.pending is not None:
            self.pending.note("Abs/Rays row without its *vgr row")
            self.pending = None

    def _loose(self, line: str) -> None:
        parsed = split_summary_line(line)
        if parsed is None:
            return
        if parsed.tag == "*vgr" and self.pending is not None:
            apply_vgr(self.pending, parsed)
            self.pending.complete = parsed.whole
            self.pending = None
            return
        self._drop_pending()
        run = BenchRun(kind="table", machine=Machine(hostname=parsed.host))
        run.brlcad_version = self.release
        (apply_vgr if parsed.tag == "*vgr" else apply_abs)(run, parsed)
        run.complete = False
        self.runs.append(run)
        if parsed.tag != "*vgr":
            self.pending = run


def _add_trailing(run: BenchRun, text: str | None) -> None:
    text = clip(text, 500)
    if not text:
        return
    run.note(text)
    if text.startswith("-") and run.rt_args is None:
        run.rt_args = text
        run.processors = run.processors or processors_from_args(text)


def parse_tables(lines: list[str]) -> list[BenchRun]:
    """Parse a troff benchmark document into one run per table row pair (or 4.4 row)."""
    parser = TableParser()
    for line in lines:
        parser.feed(line)
    parser._drop_pending()
    return parser.runs
