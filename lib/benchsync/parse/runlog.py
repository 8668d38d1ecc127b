"""The run log that `bench/run.sh` writes (`run-<PID>-benchmark.log`) or prints to stdout.

Sections, in order: header (`B R L - C A D   B E N C H M A R K`, `Running … on <date>`,
`uname -a`), `Using [...] for X` settings, `RT reports the following version information:`,
one `+++++ <model>` section per model (`Frame NN: … rays/sec (RTFM)` lines, `pixcmp`,
`<model>.pix: answers are RIGHT`), `Total testing time elapsed`, the `Abs`/`*vgr` summary
pair, the VGR banner, warnings, and the system information blocks.
"""

from __future__ import annotations

import re

from .model import BenchRun, Machine, clip, iso_date, to_float, to_int
from .summary import apply_abs, apply_vgr, is_summary_line, split_summary_line
from .sysinfo import apply_sysinfo

HEADER = "B R L - C A D   B E N C H M A R K"
_FRAME = re.compile(
    r"Frame\s+(\d+):\s+(\d+)\s+rays\s+in\s+([\d.]+)\s+sec\s*=\s*([\d.eE+]+)\s+rays/sec \(RTFM\)"
)
_VERSION = re.compile(r"BRL-CAD Release\s+(\d+(?:\.\d+)*)")
_METRIC = re.compile(r"VGR performance metric of\s+([\d.]+)")
_LOG_VGR = re.compile(r"Logarithmic VGR metric is\s+([\d.]+)")
_VERDICT = re.compile(r"^(\S+?)\.pix:?\s+(.*)$")
_ARCHES = frozenset(
    "x86_64 amd64 i386 i486 i586 i686 aarch64 arm64 armv6l armv7l ppc ppc64 ppc64le powerpc "
    "sparc sparc64 sun4u sun4v mips mips64 ia64 alpha riscv64 s390x loongarch64 i86pc".split()
)
_OS_TAILS = ("GNU/Linux", "GNU", "Linux", "Android", "Cygwin", "Msys")


def parse_uname(line: str, machine: Machine) -> None:
    """Read OS, host, kernel release and architecture from a `uname -a` line."""
    tokens = line.split()
    if len(tokens) < 3:
        return
    machine.os = clip(tokens[0])
    machine.hostname = clip(tokens[1])
    machine.os_release = clip(tokens[2])
    tail = tokens[3:]
    while tail and tail[-1] in _OS_TAILS:
        tail.pop()
    if tail and (tail[-1].lower() in _ARCHES or len(tokens) > 5):
        machine.arch = clip(tail[-1])


class RunLogParser:
    """Line-by-line state machine over one or more concatenated run logs."""

    def __init__(self) -> None:
        self.runs: list[BenchRun] = []
        self.run = self._new_run()
        self.model: str | None = None
        self.want_uname = False
        self.want_version = False
        self.finished = False
        self.abs_host: str | None = None

    def _new_run(self) -> BenchRun:
        run = BenchRun(kind="run_log", machine=Machine(hostname=None), complete=False)
        self.runs.append(run)
        return run

    def _restart(self) -> None:
        self._close()
        self.run = self._new_run()
        self.model = None
        self.finished = False
        self.abs_host = None

    def feed(self, line: str) -> None:
        """Take one line (no newline) of the log."""
        if self.want_uname and line.strip():
            self.want_uname = False
            if not line.startswith(("Using [", "Looking for", "...")):
                parse_uname(line, self.run.machine)
                return
        first = line[:1]
        if first == "F" and line.startswith("Frame"):
            self._frame(line)
        elif first == "+" and line.startswith("+++++"):
            self._section(line)
        elif ".pix" in line and ("answers" in line or "WRONG" in line or "FAILURE" in line):
            self._verdict(line)
        elif is_summary_line(line):
            self._summary(line)
        else:
            self._other(line)

    def _frame(self, line: str) -> None:
        match = _FRAME.search(line)
        if not match or self.model is None:
            return
        res = self.run.result(self.model)
        res.frames = (res.frames or 0) + 1
        res.rays = to_int(match.group(2))
        res.rays_per_sec = to_float(match.group(4))

    def _section(self, line: str) -> None:
        name = clip(line[5:].strip().split(" ")[0] if line[5:].strip() else "", 64)
        if name is None:
            return
        repeated = self.model is not None and self.run.results[0].model == name
        if self.finished or repeated:
            self._restart()
        self.model = name
        self.run.result(name)

    def _verdict(self, line: str) -> None:
        match = _VERDICT.match(line.strip())
        if not match:
            return
        name, text = match.groups()
        name = clip(name.rsplit("/", 1)[-1], 64) or self.model
        if name is None:
            return
        text = " ".join(text.split())
        if text.startswith("answers are "):
            text = text[len("answers are ") :]
        elif text.startswith("WRONG"):
            text = "WRONG"
        self.run.result(name).verdict = clip(text, 64)

    def _summary(self, line: str) -> None:
        parsed = split_summary_line(line)
        if parsed is None:
            return
        if parsed.tag == "*vgr":
            apply_vgr(self.run, parsed)
        else:
            apply_abs(self.run, parsed)
            self.abs_host = parsed.host
        self.finished = True

    def _other(self, line: str) -> None:
        run = self.run
        if line.startswith(HEADER):
            if run.results or run.run_date:
                self._restart()
        elif line.startswith("Running ") and " on " in line and run.run_date is None:
            if "benchmark" in line.lower() or "run.sh" in line:
                run.run_date = clip(line.split(" on ", 1)[1])
                run.run_at = iso_date(run.run_date)
        elif "Logging output to" in line:
            self.want_uname = True
        elif line.startswith("RT reports the following version"):
            self.want_version = True
        elif self.want_version and "BRL-CAD Release" in line:
            match = _VERSION.search(line)
            if match and run.brlcad_version is None:
                run.brlcad_version = match.group(1)
            self.want_version = False
        elif "DID NOT COMPLETE" in line:
            run.note("benchmark analysis did not complete")
            run.complete = False
            self.finished = True
        elif line.startswith("RAYTRACE ERROR") and self.model:
            run.result(self.model).verdict = "RAYTRACE ERROR"
        elif line.startswith("BENCHMARK COMPARISON FAILURE") and self.model:
            run.result(self.model).verdict = "BENCHMARK COMPARISON FAILURE"
        elif "VGR performance metric" in line:
            match = _METRIC.search(line)
            run.vgr_metric = to_float(match.group(1)) if match else run.vgr_metric
        elif line.startswith("Logarithmic VGR"):
            match = _LOG_VGR.search(line)
            run.log_vgr = to_float(match.group(1).rstrip(".")) if match else run.log_vgr
        elif line.startswith("WARNING"):
            run.note(clip(line, 500) or "WARNING")

    def _close(self) -> None:
        run = self.run
        if run.machine.hostname is None:
            run.machine.hostname = self.abs_host
        has_summary = run.mean_rays_per_sec is not None or run.mean_vgr is not None
        if has_summary and "benchmark analysis did not complete" not in run.notes:
            run.complete = all(r.rays_per_sec is not None for r in run.results) and bool(
                run.results
            )
        if not has_summary:
            run.note("run log ends before the Abs/*vgr summary")
        for res in run.results:
            if res.rays_per_sec is None and res.verdict is None:
                run.complete = False

    def finish(self) -> list[BenchRun]:
        """Close the last run and return every run seen."""
        self._close()
        return [r for r in self.runs if r.results or r.run_date or r.brlcad_version]


def parse_run_log(text: str) -> list[BenchRun]:
    """Parse one (or several concatenated) run logs into runs."""
    parser = RunLogParser()
    for segment in _segments(text):
        head, marker, tail = segment.partition("\nCollecting system")
        for line in head.split("\n"):
            parser.feed(line)
        if marker:
            apply_sysinfo(tail, parser.run.machine)
    return parser.finish()


def _segments(text: str) -> list[str]:
    """Split concatenated run logs at each header line."""
    parts = text.split("\n" + HEADER)
    return [parts[0]] + [HEADER + part for part in parts[1:]]
