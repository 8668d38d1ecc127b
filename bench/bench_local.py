#!/usr/bin/env python3
"""Benchmarks of the foundation (issue 2), each a ratio against a baseline in the same run.

1. throughput: 10,000 logs of ~20 KB filed by `ftp_sync` into PostgreSQL, divided by
   `md5sum` + `gzip -6 -k` over the same files (the floor for hashing and compressing);
2. no-op poll: `ftp_sync` over a queue of 100,000 already-filed files, divided by
   `find QUEUE -type f -printf '%s %T@ %p\\n'`;
3. memory: peak RSS of `ftp_sync` filing one 1 GiB file.

Runs are interleaved (A B A B …) and medians reported, because file creation on ext4 is
erratic here (perf-notes). Usage: .venv/bin/python bench/bench_local.py [--small]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, SAMPLE, fresh_database, make_logs, md5sum_gzip, timed
from servers.servers import start_postgres


def write_config(root: Path, url: str, queue: Path) -> Path:
    ini = root / "bench.ini"
    ini.write_text(
        f"[database]\nurl = {url}\n[store]\nroot = {root}/store\n[logs]\ndir = {root}/log\n"
        f"[locks]\ndir = {root}/lock\n[limits]\nmax_file_bytes = 2 GiB\n"
        f"[ftp]\nsource = {queue}\nsettle_seconds = 0\nafter_ingest = keep\n"
    )
    return ini


def sync_cmd(ini: Path) -> list[str]:
    return [sys.executable, str(REPO / "bin/ftp_sync"), "--config", str(ini)]


def reset(root: Path, pg, name: str) -> str:
    shutil.rmtree(root / "store", ignore_errors=True)
    return fresh_database(pg, name)


def bench_throughput(work: Path, pg, n: int, rounds: int) -> dict:
    queue = work / "queue"
    make_logs(queue, n)
    copy = work / "copy"
    floors, syncs = [], []
    env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
    for r in range(rounds):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(queue, copy)
        subprocess.run(["sync"], check=True)
        floors.append(md5sum_gzip(copy))
        url = reset(work, pg, f"bench_tp_{r}")
        ini = write_config(work, url, queue)
        subprocess.run(["sync"], check=True)
        syncs.append(timed(sync_cmd(ini), env=env))
    return {
        "files": n,
        "floor_s": statistics.median(floors),
        "ftp_sync_s": statistics.median(syncs),
        "ratio": statistics.median(syncs) / statistics.median(floors),
        "runs": list(zip(floors, syncs, strict=True)),
    }


def bench_noop(work: Path, pg, n: int, rounds: int) -> dict:
    queue = work / "noop-queue"
    queue.mkdir()
    for i in range(n):
        (queue / f"{i}.log").write_bytes(b"log %d\n" % i)
    url = reset(work, pg, "bench_noop")
    ini = write_config(work, url, queue)
    env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
    timed(sync_cmd(ini), env=env)  # file them once
    finds, polls = [], []
    for _ in range(rounds):
        finds.append(timed(["find", str(queue), "-type", "f", "-printf", "%s %T@ %p\n"]))
        polls.append(timed(sync_cmd(ini), env=env))
    return {
        "files": n,
        "find_s": statistics.median(finds),
        "poll_s": statistics.median(polls),
        "ratio": statistics.median(polls) / statistics.median(finds),
    }


def bench_memory(work: Path, size_mib: int) -> dict:
    queue = work / "big-queue"
    queue.mkdir()
    chunk = SAMPLE.read_bytes() * 50
    with open(queue / "huge.log", "wb") as f:
        written = 0
        while written < size_mib * 1024 * 1024:
            f.write(chunk)
            written += len(chunk)
    (work / "mem").mkdir(exist_ok=True)
    ini = write_config(work / "mem", f"sqlite:///{work}/mem/b.sqlite", queue)
    env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds = timed(sync_cmd(ini), env=env)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"bytes": written, "seconds": seconds, "peak_rss_mib": max(peak, before) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run with 10x less data")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    scale = 10 if args.small else 1
    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            work = Path(tmp)
            mem = bench_memory(work, 1024 // scale)
            print(
                f"memory: one {mem['bytes'] / 2**20:.0f} MiB file in {mem['seconds']:.1f} s,"
                f" peak RSS {mem['peak_rss_mib']:.0f} MiB (target <= 100 MiB)",
                flush=True,
            )
            tp = bench_throughput(work, pg, 10_000 // scale, args.rounds)
            print(
                f"throughput: {tp['files']} logs ~20 KB into PostgreSQL: ftp_sync"
                f" {tp['ftp_sync_s']:.2f} s / md5sum+gzip -6 {tp['floor_s']:.2f} s"
                f" = {tp['ratio']:.2f}x (target <= 1.5)",
                flush=True,
            )
            noop = bench_noop(work, pg, 100_000 // scale, args.rounds)
            print(
                f"no-op poll: {noop['files']} filed files: ftp_sync {noop['poll_s']:.2f} s"
                f" / find {noop['find_s']:.2f} s = {noop['ratio']:.2f}x (target <= 2)",
                flush=True,
            )
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
