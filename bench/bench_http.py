"""Measure the HTTP API: 32 concurrent clients posting distinct ~20 KB logs against PostgreSQL.

For each round: a fresh database, `benchsync serve` as a real process, 32 client threads
(spread over 4 client processes, one keep-alive connection each) posting distinct real
run logs for `--seconds`; then every posted log is written to a folder and filed by
`benchsync ingest` into another fresh database (the same content without HTTP). Rounds
alternate A B A B; medians of `--rounds` are printed, with uploads/s, p50/p99 latency,
and a row count after each round (zero lost, zero duplicated).

    .venv/bin/python bench/bench_http.py [--seconds 30] [--clients 32] [--threads 8]

PostgreSQL is a throwaway cluster from tests/servers (fsync off), or BENCHSYNC_TEST_PG.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))

from samples_path import samples_dir  # noqa: E402

SAMPLE = "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"
TOKEN = "bench-0123456789abcdef0123456789"
PROCS = 4


def make_log(base: bytes, round_no: int, client: int, i: int) -> bytes:
    """A distinct, realistic ~20 KB run log: the real sample with its own host and a tag."""
    host = f" node-{round_no}-{client}-{i}.example.org ".encode()
    return base.replace(b" vm ", host) + f"# bench {round_no} {client} {i}\n".encode()


def _client_proc(port: int, clients: list[int], round_no: int, stop_at: float, out) -> None:
    """Several client threads in one process; each posts until `stop_at`."""
    base = (samples_dir() / SAMPLE).read_bytes()
    results: list[tuple[int, int, int, float]] = []
    lock = threading.Lock()

    def worker(client: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        i = 0
        while time.time() < stop_at:
            body = make_log(base, round_no, client, i)
            headers = {"Authorization": f"Bearer {TOKEN}", "X-Filename": f"run-{i}-benchmark.log"}
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/logs", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append((client, i, status, time.perf_counter() - t0))
            i += 1
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(d: Path, db_url: str, threads: int) -> Path:
    tokens = d / "tokens"
    tokens.write_text(f"bench {TOKEN}\n")
    tokens.chmod(0o600)
    ini = d / "benchsync.ini"
    ini.write_text(
        f"[database]\nurl = {db_url}\n[store]\nroot = store\n[logs]\ndir = log\n"
        f"[locks]\ndir = lock\n[http]\ntoken_file = tokens\nthreads = {threads}\n"
    )
    return ini


def count_rows(db_url: str) -> tuple[int, int, int]:
    from benchsync.db import connect

    db = connect(db_url)
    try:
        files = db.query_one("SELECT COUNT(*), COUNT(DISTINCT md5) FROM files")
        receipts = db.query_one("SELECT COUNT(*) FROM receipts")
        return files[0], files[1], receipts[0]
    finally:
        db.close()


def run_http(pg, round_no: int, args, work: Path) -> dict:
    """One HTTP round; returns rates, latencies, row counts and the posted logs' keys."""
    db_url = pg.create_database(f"bench_http_{uuid.uuid4().hex[:8]}")
    d = work / f"http{round_no}"
    d.mkdir()
    ini = write_config(d, db_url, args.threads)
    port = free_port()
    env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
    cmd = [sys.executable, str(ROOT / "bin/benchsync"), "serve", "--config", str(ini)]
    server = subprocess.Popen(cmd + ["--listen", f"127.0.0.1:{port}"], env=env)
    _wait_healthy(port)
    stop_at = time.time() + args.seconds
    out: mp.Queue = mp.Queue()
    groups = [list(range(p, args.clients, PROCS)) for p in range(PROCS)]
    procs = [
        mp.Process(target=_client_proc, args=(port, g, round_no, stop_at, out)) for g in groups
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get()]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    ok = [r for r in results if r[2] in (200, 201)]
    new = [r for r in results if r[2] == 201]
    latencies = sorted(r[3] for r in ok)
    files, distinct, receipts = count_rows(db_url)
    pg.drop_database(db_url.rsplit("/", 1)[1])
    return {
        "posted": len(results),
        "ok": len(ok),
        "new": len(new),
        "errors": len(results) - len(ok),
        "rate": len(ok) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "rows": (files, distinct, receipts),
        "keys": [(r[0], r[1]) for r in ok],
    }


def run_ingest(pg, round_no: int, keys: list[tuple[int, int]], work: Path) -> dict:
    """`benchsync ingest` of the same logs, written to a folder first (not timed)."""
    db_url = pg.create_database(f"bench_ingest_{uuid.uuid4().hex[:8]}")
    d = work / f"ingest{round_no}"
    (d / "in").mkdir(parents=True)
    base = (samples_dir() / SAMPLE).read_bytes()
    for client, i in keys:
        (d / "in" / f"run-{client}-{i}-benchmark.log").write_bytes(
            make_log(base, round_no, client, i)
        )
    ini = write_config(d, db_url, 1)
    env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
    cmd = [sys.executable, str(ROOT / "bin/benchsync"), "ingest", str(d / "in")]
    start = time.perf_counter()
    subprocess.run([*cmd, "--config", str(ini), "-q"], env=env, check=True)
    elapsed = time.perf_counter() - start
    files, distinct, receipts = count_rows(db_url)
    pg.drop_database(db_url.rsplit("/", 1)[1])
    return {"files": len(keys), "rate": len(keys) / elapsed, "rows": (files, distinct, receipts)}


def _wait_healthy(port: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--threads", type=int, default=8, help="server worker threads")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from servers.servers import external_postgres, start_postgres

    url = os.environ.get("BENCHSYNC_TEST_PG")
    pg = external_postgres(url) if url else start_postgres()
    work = Path(tempfile.mkdtemp(prefix="bench_http."))
    try:
        http_runs, ingest_runs = [], []
        for r in range(1, args.rounds + 1):
            h = run_http(pg, r, args, work)
            keys = h.pop("keys")
            print(f"round {r} http   {json.dumps(h)}", flush=True)
            g = run_ingest(pg, r, keys, work)
            print(f"round {r} ingest {json.dumps(g)}", flush=True)
            lost = h["ok"] - h["rows"][0]
            assert h["rows"] == (h["new"], h["new"], h["new"]), f"lost or duplicated: {h}"
            assert lost == 0 and h["errors"] == 0, h
            assert g["rows"] == (g["files"], g["files"], g["files"]), g
            http_runs.append(h)
            ingest_runs.append(g)
            shutil.rmtree(work / f"ingest{r}", ignore_errors=True)
        med = statistics.median
        rate = med(h["rate"] for h in http_runs)
        base = med(g["rate"] for g in ingest_runs)
        print(
            f"\nHTTP  {args.clients} clients, {args.threads} server threads: "
            f"{rate:.0f} uploads/s (median of {args.rounds}), "
            f"p50 {med(h['p50_ms'] for h in http_runs):.1f} ms, "
            f"p99 {med(h['p99_ms'] for h in http_runs):.1f} ms, "
            f"0 lost, 0 duplicated"
        )
        print(f"ingest of the same files: {base:.0f} files/s (median)")
        print(f"HTTP / ingest throughput: {rate / base:.2f}x")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
