"""`benchsync verify --deep` over 100,000 stored files, against a zcat | md5sum floor.

Builds a store of N small deterministic gzip files (log-like text, ~1-4 KB each) and a
SQLite database with one `files` row per file (bulk insert), then times, interleaved
A B A B and as medians of 3:

  A  floor:     find STORE -name '*.gz' -exec zcat {} + | md5sum
  B  benchsync: bin/benchsync verify --deep   (a whole process, as cron runs it)

and prints B / A (target <= 1.3). Both decompress and hash every stored byte; the
verifier also hashes each file separately, compares it with its row, scans the store for
orphans and records the run.

    .venv/bin/python bench/bench_verify.py [--files 100000] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))

from benchsync.db import connect  # noqa: E402
from benchsync.store import GZIP_HEADER, LEVEL, Store, _zlib  # noqa: E402

LINE = b"Frame %6d: %8d rays in %5.2f sec = %10.2f rays/sec (RTFM) host=node-%d\n"


def content(i: int) -> bytes:
    """A distinct, deterministic log-like text of 1-4 KB."""
    lines = 16 + i % 48
    head = b"B R L - C A D   B E N C H M A R K  #%d\n" % i
    return head + b"".join(LINE % (n, i * 7 + n, n / 3, i * 1.5 + n, i % 97) for n in range(lines))


def gzip_bytes(data: bytes) -> bytes:
    """The store's deterministic gzip (header with mtime 0, ISA-L deflate, crc, size)."""
    c = _zlib.compressobj(LEVEL, _zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    crc = _zlib.crc32(data) & 0xFFFFFFFF
    return GZIP_HEADER + body + crc.to_bytes(4, "little") + len(data).to_bytes(4, "little")


def build(base: Path, n: int) -> Path:
    """Write the store, the database and the config; return the config path."""
    store = Store(base / "store").open()
    rows = []
    made: set[str] = set()
    t0 = time.monotonic()
    for i in range(n):
        data = content(i)
        md5 = hashlib.md5(data).hexdigest()
        path = store.path_for(md5)
        if path.parent.name not in made:
            path.parent.mkdir(exist_ok=True)
            made.add(path.parent.name)
        path.write_bytes(gzip_bytes(data))
        rows.append((md5, len(data), store.relpath(md5), "2026-01-01T00:00:00+00:00", "parsed"))
    t1 = time.monotonic()
    db = connect(f"sqlite:///{base / 'bench.sqlite'}")
    with db.transaction():
        db.executemany(
            "INSERT INTO files (md5, size, stored_path, first_seen_at, parse_status)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    db.close()
    print(f"built {n} stored files in {t1 - t0:.1f} s, rows in {time.monotonic() - t1:.1f} s")
    config = base / "bench.ini"
    config.write_text(
        "[database]\nurl = sqlite:///bench.sqlite\n[store]\nroot = store\n"
        "[logs]\ndir = log\n[locks]\ndir = lock\n"
    )
    return config


def timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, shell=shell, capture_output=True, text=True)
    return time.perf_counter() - t0, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", help="where to build (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="bench_verify."))
    base.mkdir(parents=True, exist_ok=True)
    try:
        config = base / "bench.ini"
        if not config.exists():  # --dir DIR keeps the data for the next run
            config = build(base, args.files)
        floor_cmd = f"find {base / 'store'} -name '*.gz' -exec zcat {{}} + | md5sum"
        verify_cmd = [
            sys.executable,
            str(ROOT / "bin" / "benchsync"),
            "verify",
            "--deep",
            "--config",
            str(config),
        ]
        env_note = os.environ.get("BENCHSYNC_NO_VENV")
        timed(floor_cmd, shell=True)  # warm the page cache once for both
        floor, ours = [], []
        for r in range(args.rounds):
            t, p = timed(floor_cmd, shell=True)
            assert p.returncode == 0, p.stderr
            floor.append(t)
            t, p = timed(verify_cmd)
            assert p.returncode == 0, (p.returncode, p.stderr)
            ours.append(t)
            print(f"round {r + 1}: floor {floor[-1]:.2f} s  verify --deep {ours[-1]:.2f} s")
        log = (base / "log" / "verifier.log").read_text().splitlines()[-1]
        assert "failed=0" in log and "status=ok" in log, log
        a, b = statistics.median(floor), statistics.median(ours)
        print(
            f"files {args.files}: floor (zcat | md5sum) {a:.2f} s, verify --deep {b:.2f} s,"
            f" ratio {b / a:.2f} (target <= 1.3){' [no venv]' if env_note else ''}"
        )
        print(f"last summary: {log}")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
