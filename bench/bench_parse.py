"""Measure how many benchmark logs per second `benchsync.parse.parse_log` handles on one core.

Builds 10,000 logs from the real samples (run logs mostly, plus summaries and rt logs),
each varied slightly (host name, numbers, CRLF, a noise line) so no two are identical,
then parses them all and prints logs/s and MB/s.

    .venv/bin/python bench/bench_parse.py [--count N] [--run-logs-only]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))

from benchsync.parse import parse_log  # noqa: E402
from samples_path import samples_dir  # noqa: E402


def load_samples() -> dict[str, bytes]:
    """Read every sample file (name -> bytes)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(samples_dir().iterdir())
        if p.is_file() and p.name != "SOURCES.md"
    }


def vary(data: bytes, rng: random.Random, serial: int) -> bytes:
    """Return a slightly different copy of one log: host, a digit, line endings, noise."""
    data = data.replace(b" vm ", b" node-%d.example.org " % serial)
    digit = str(rng.randrange(10)).encode()
    data = data.replace(b"0 rays/sec", digit + b" rays/sec", 1)
    if rng.random() < 0.2:
        data = data.replace(b"\n", b"\r\n")
    if rng.random() < 0.3:
        cut = data.find(b"\n", len(data) // 2)
        data = data[:cut] + b"\nsome mail client noise \xe9\xff\n" + data[cut:]
    return data


def build(count: int, seed: int = 1, run_log_share: float = 0.7) -> list[tuple[bytes, str]]:
    """Make `count` varied logs; `run_log_share` of them are full run logs (~15-20 KB)."""
    samples = load_samples()
    run_logs = [n for n in samples if "benchmark.log" in n]
    others = [n for n in samples if n not in run_logs]
    rng = random.Random(seed)
    logs = []
    for serial in range(count):
        name = rng.choice(run_logs) if rng.random() < run_log_share else rng.choice(others)
        logs.append((vary(samples[name], rng, serial), name))
    return logs


def main() -> None:
    """Parse the generated logs once and report the rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--run-logs-only", action="store_true", help="only ~15-20 KB run logs")
    args = parser.parse_args()
    logs = build(args.count, run_log_share=1.0 if args.run_logs_only else 0.7)
    size = sum(len(data) for data, _ in logs)
    start = time.perf_counter()
    statuses: dict[str, int] = {}
    for data, name in logs:
        status = parse_log(data, name).status
        statuses[status] = statuses.get(status, 0) + 1
    elapsed = time.perf_counter() - start
    print(f"{len(logs)} logs, {size / 1e6:.1f} MB in {elapsed:.2f} s")
    print(f"{len(logs) / elapsed:,.0f} logs/s, {size / 1e6 / elapsed:.1f} MB/s  {statuses}")


if __name__ == "__main__":
    main()
