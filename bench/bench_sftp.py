"""scp_sync against OpenSSH's own client on the same loopback sshd, same run.

Two shapes: 1,000 logs of ~20 KB, and one 200 MB file. Peer = `sftp -b` download
(`get -r`) + `md5sum` + `gzip -6 -k` of what it fetched; ours = `bin/benchsync scp-sync`
into a fresh SQLite database and store. Runs are interleaved (A B A B A B) and the
medians compared: ratio = ours / peer (target ≤ 1.5, aim ≤ 1.0).

    .venv/bin/python bench/bench_sftp.py [--small 1000] [--big-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from servers.servers import SshServer, start_sshd  # noqa: E402


def make_small(folder: Path, n: int) -> None:
    """n distinct log-like files of ~20 KB."""
    folder.mkdir(parents=True)
    for i in range(n):
        line = f"Frame {i:5d}: {i * 7919 % 100003} rays in {i % 97}.53 sec = {i * 31} rays/s\n"
        (folder / f"run-{i:05d}-benchmark.log").write_bytes((line * 400).encode()[:20_000])


def make_big(folder: Path, mb: int) -> None:
    """One file of `mb` MB, half random and half text, so gzip has real work."""
    folder.mkdir(parents=True)
    with open(folder / "big-benchmark.log", "wb") as f:
        for i in range(mb):
            f.write(os.urandom(256 * 1024) + (f"line {i} of text\n" * 49152).encode()[: 768 * 1024])


def peer(srv: SshServer, remote: Path, work: Path) -> float:
    """OpenSSH sftp -b download, then md5sum and gzip -6 of every file; wall seconds."""
    out = work / "peer"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    batch = work / "batch"
    batch.write_text(f"get -r {remote} {out}\n")
    ssh = [
        "-i", str(srv.client_key), "-P", str(srv.port),
        "-o", f"UserKnownHostsFile={srv.known_hosts_file}", "-o", "BatchMode=yes",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(["sftp", "-q", "-b", str(batch), *ssh, f"{srv.user}@{srv.host}"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    files = [str(p) for p in out.rglob("*") if p.is_file()]
    for i in range(0, len(files), 500):
        subprocess.run(["md5sum", *files[i : i + 500]], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["gzip", "-6", "-k", *files[i : i + 500]], check=True)
    return time.perf_counter() - start


def ours(srv: SshServer, remote: Path, work: Path) -> float:
    """bin/benchsync scp-sync into a fresh workspace; wall seconds including start-up."""
    ws = work / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    (ws / "benchsync.ini").write_text(
        f"[database]\nurl = sqlite:///{ws}/db.sqlite\n[store]\nroot = store\n[logs]\ndir = log\n"
        f"[locks]\ndir = lock\n[limits]\nmax_file_bytes = 512 MiB\n"
        f"[scp]\nsource = sftp://{srv.user}@{srv.host}:{srv.port}{remote}\n"
        f"key_file = {srv.client_key}\nknown_hosts = {srv.known_hosts_file}\nsettle_seconds = 0\n"
    )
    subprocess.run([sys.executable, str(REPO / "bin/benchsync"), "initdb", "--config",
                    str(ws / "benchsync.ini")], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    cmd = [sys.executable, str(REPO / "bin/benchsync"), "scp-sync", "--config"]
    start = time.perf_counter()
    subprocess.run([*cmd, str(ws / "benchsync.ini")], check=True)
    return time.perf_counter() - start


def compare(name: str, srv: SshServer, remote: Path, work: Path, rounds: int) -> float:
    a, b = [], []
    for _ in range(rounds):
        a.append(peer(srv, remote, work))
        b.append(ours(srv, remote, work))
    pa, pb = statistics.median(a), statistics.median(b)
    print(f"{name:>14}: peer {pa:6.2f}s  scp_sync {pb:6.2f}s  ratio {pb / pa:.2f}"
          f"   (peer {', '.join(f'{x:.2f}' for x in a)}; ours {', '.join(f'{x:.2f}' for x in b)})",
          flush=True)  # fmt: skip
    return pb / pa


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        home = Path(tmp) / "home"
        make_small(home / "small", args.small)
        make_big(home / "big", args.big_mb)
        srv = start_sshd(home=home)
        try:
            compare(f"{args.small} x 20 KB", srv, home / "small", Path(tmp) / "w", args.rounds)
            compare(f"{args.big_mb} MB", srv, home / "big", Path(tmp) / "w", args.rounds)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
