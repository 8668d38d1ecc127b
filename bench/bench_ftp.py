#!/usr/bin/env python3
"""ftp_sync from a loopback FTP server against its peer, as a ratio measured in one run.

Two shapes on a real pyftpdlib server (`python -m pyftpdlib`, its own process): 1,000 logs
of ~20 KB, and one 200 MB log. Baseline: `lftp -e 'mirror …'` of the same folder, then
`md5sum` and `gzip -6 -k` over what it fetched (the work ftp_sync does in one pass).
ftp_sync files into PostgreSQL (a throwaway cluster from tests/servers), a fresh database
and store each round. Rounds alternate baseline and ftp_sync (A B A B …); medians reported.

Usage: .venv/bin/python bench/bench_ftp.py [--small] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, SAMPLE, fresh_database, make_logs, md5sum_gzip, timed
from servers.servers import start_ftp_subprocess, start_postgres


def make_big(folder: Path, size: int) -> None:
    """One log-like file of `size` bytes: the sample text, each copy numbered."""
    folder.mkdir(parents=True, exist_ok=True)
    base = SAMPLE.read_bytes()
    with open(folder / "huge-benchmark.log", "wb") as f:
        written, i = 0, 0
        while written < size:
            block = f"copy {i:09d}\n".encode() + base
            f.write(block[: size - written])
            written += min(len(block), size - written)
            i += 1


def baseline(server, folder: str, out: Path) -> float:
    """lftp mirror of the folder, then md5sum and gzip -6 of every fetched file."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = f"set ftp:ssl-allow no; mirror {folder} {out}/{folder}; quit"
    login = f"{server.user},{server.password}"
    seconds = timed(["lftp", "-u", login, "-p", str(server.port), "-e", script, "127.0.0.1"])
    return seconds + md5sum_gzip(out)


def ftp_sync(server, folder: str, work: Path, pg, name: str) -> float:
    """One ftp_sync run into a fresh PostgreSQL database and store."""
    shutil.rmtree(work / "store", ignore_errors=True)
    url = fresh_database(pg, name)
    secret = work / "ftp.password"
    secret.write_text(server.password)
    secret.chmod(0o600)
    ini = work / "bench.ini"
    ini.write_text(
        f"[database]\nurl = {url}\n[store]\nroot = {work}/store\n[logs]\ndir = {work}/log\n"
        f"[locks]\ndir = {work}/lock\n[limits]\nmax_file_bytes = 1 GiB\n"
        f"[ftp]\nsource = ftp://{server.user}@127.0.0.1:{server.port}/{folder}\n"
        f"password_file = {secret}\nsettle_seconds = 0\nafter_ingest = keep\n"
    )
    subprocess.run(["sync"], check=True)
    cmd = [sys.executable, str(REPO / "bin/ftp_sync"), "--config", str(ini)]
    return timed(cmd, env={**os.environ, "BENCHSYNC_NO_VENV": "1"})


def shape(server, folder: str, work: Path, pg, rounds: int) -> tuple[float, float]:
    bases, syncs = [], []
    for r in range(rounds):
        subprocess.run(["sync"], check=True)
        bases.append(baseline(server, folder, work / "mirror"))
        syncs.append(ftp_sync(server, folder, work, pg, f"bench_ftp_{folder}_{r}"))
    shutil.rmtree(work / "mirror", ignore_errors=True)
    pairs = ", ".join(f"({b:.2f}, {s:.2f})" for b, s in zip(bases, syncs, strict=True))
    print(f"  {folder}: rounds (baseline, ftp_sync) = {pairs}")
    return statistics.median(bases), statistics.median(syncs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run with 10x less data")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("lftp"):
        sys.exit("bench_ftp: lftp is not installed (apt-get install lftp)")
    scale = 10 if args.small else 1
    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            work = Path(tmp)
            home = work / "ftphome"
            make_logs(home / "small", 1000 // scale)
            make_big(home / "big", 200_000_000 // scale)
            server = start_ftp_subprocess(home)
            try:
                for folder, label in (("small", f"{1000 // scale} logs ~20 KB"),
                                      ("big", f"one {200 // scale} MB log")):  # fmt: skip
                    base, sync = shape(server, folder, work, pg, args.rounds)
                    print(
                        f"ftp {label}: ftp_sync {sync:.2f} s / (lftp mirror + md5sum + gzip -6)"
                        f" {base:.2f} s = {sync / base:.2f}x (target <= 1.5, aim <= 1.0)",
                        flush=True,
                    )
            finally:
                server.stop()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
