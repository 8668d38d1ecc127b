"""What the benchmarks share: paths, the sample-based logs, timing, the md5sum+gzip floor.

Every benchmark measures benchsync against a baseline in the same run; these helpers
keep the data and the floor identical from one benchmark to the next.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "lib")]
SAMPLE = REPO / "examples/samples/run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"


def make_logs(folder: Path, n: int, size: int = 20_000) -> None:
    """n distinct log-like files of about `size` bytes (real log text, varied numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = SAMPLE.read_bytes()
    for i in range(n):
        head = f"Running the BRL-CAD benchmark, submission {i} pid {i * 7919}\n".encode()
        body = (head + base)[: size - 40]
        (folder / f"run-{i}-benchmark.log").write_bytes(body + f"\nrun {i:012d}\n".encode())


def timed(cmd: list[str] | str, **kw) -> float:
    """Seconds one command takes (its output discarded; a failure raises)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def md5sum_gzip(folder: Path) -> float:
    """The floor for hashing and compressing: md5sum, then gzip -6 -k, of every file."""
    seconds = timed(f"find {folder} -type f -print0 | xargs -0 md5sum >/dev/null", shell=True)
    seconds += timed(f"find {folder} -type f -print0 | xargs -0 gzip -6 -k", shell=True)
    return seconds


def fresh_database(pg, name: str) -> str:
    """An empty PostgreSQL database `name` (dropped first if a round left one)."""
    try:
        pg.drop_database(name)
    except Exception:  # noqa: BLE001 - nothing to drop the first time
        pass
    return pg.create_database(name)
