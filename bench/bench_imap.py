#!/usr/bin/env python3
"""imap_sync from a loopback Dovecot against its peer, as a ratio measured in one run.

1,000 mails, each with a distinct ~20 KB log attached (base64, as mail clients send it),
APPENDed to a real Dovecot (tests/servers). Baseline: `mbsync` (isync) mirroring the
folder over IMAPS to a fresh Maildir, then a small extraction script (stdlib `email`,
compat32, writes each attachment to a file), then `md5sum` and `gzip -6 -k` of the
extracted logs. The extraction is timed separately and reported both ways: the primary
ratio counts it in the baseline (without it mbsync's output is mail, not logs); the strict
ratio leaves it out. imap_sync files into PostgreSQL (a throwaway cluster), a fresh database
and store each round. Rounds alternate baseline and imap_sync (A B A B …); medians reported.

Usage: .venv/bin/python bench/bench_imap.py [--mails N] [--rounds N]
"""

from __future__ import annotations

import argparse
import email.policy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

from imapclient import IMAPClient

from common import REPO, SAMPLE, fresh_database, md5sum_gzip, timed
from servers.servers import start_dovecot, start_postgres

EXTRACT = r"""
import email, os, sys
src, out = sys.argv[1], sys.argv[2]
n = 0
for sub in ("cur", "new"):
    for name in os.listdir(os.path.join(src, sub)):
        with open(os.path.join(src, sub, name), "rb") as f:
            msg = email.message_from_bytes(f.read())
        for part in msg.walk():
            if part.get_filename():
                n += 1
                with open(os.path.join(out, f"{n}.log"), "wb") as o:
                    o.write(part.get_payload(decode=True))
"""


def make_mails(n: int, size: int = 20_000) -> list[bytes]:
    """n mails, each with a distinct log of about `size` bytes attached."""
    base = SAMPLE.read_bytes()
    mails = []
    for i in range(n):
        head = f"Running the BRL-CAD benchmark, submission {i} pid {i * 7919}\n".encode()
        log = (head + base * 2)[: size - 40] + f"\nrun {i:012d}\n".encode()
        m = EmailMessage()
        m["From"] = f"User {i} <user{i}@example.org>"
        m["To"] = "benchmarks@example.org"
        m["Subject"] = f"benchmark run {i}"
        m["Message-ID"] = f"<run-{i}@example.org>"
        m.set_content("My benchmark log is attached.\n")
        m.add_attachment(log, "text", "plain", filename=f"run-{i}-benchmark.log")
        mails.append(m.as_bytes(policy=email.policy.SMTP))
    return mails


def fill(srv, mails: list[bytes]) -> None:
    with IMAPClient(srv.host, port=srv.ssl_port, ssl=True, ssl_context=srv.ssl_context()) as c:
        c.login(srv.user, srv.password)
        for i in range(0, len(mails), 100):
            c.multiappend("INBOX", mails[i : i + 100])


def baseline(srv, work: Path) -> tuple[float, float]:
    """(mbsync + md5sum + gzip seconds, extraction seconds) for a fresh mirror."""
    mirror, logs = work / "mbsync-out", work / "extracted"
    for d in (mirror, logs):
        shutil.rmtree(d, ignore_errors=True)
    mirror.mkdir()
    logs.mkdir()
    rc = work / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount bench\nHost localhost\nPort {srv.ssl_port}\nUser {srv.user}\n"
        f"Pass {srv.password}\nSSLType IMAPS\nCertificateFile {srv.cafile}\n\n"
        "IMAPStore remote\nAccount bench\n\n"
        f"MaildirStore local\nPath {mirror}/\nInbox {mirror}/INBOX\n\n"
        "Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSyncState *\n"
    )
    seconds = timed(["mbsync", "-q", "-c", str(rc), "-a"])
    extract = timed([sys.executable, "-c", EXTRACT, str(mirror / "INBOX"), str(logs)])
    return seconds + md5sum_gzip(logs), extract


def imap_sync(srv, work: Path, pg, name: str) -> float:
    """One imap_sync run into a fresh PostgreSQL database and store."""
    shutil.rmtree(work / "store", ignore_errors=True)
    url = fresh_database(pg, name)
    secret = work / "imap.password"
    secret.write_text(srv.password)
    secret.chmod(0o600)
    ini = work / "bench.ini"
    ini.write_text(
        f"[database]\nurl = {url}\n[store]\nroot = {work}/store\n[logs]\ndir = {work}/log\n"
        f"[locks]\ndir = {work}/lock\n"
        f"[imap]\nhost = {srv.host}\nport = {srv.ssl_port}\nssl = true\nuser = {srv.user}\n"
        f"password_file = {secret}\ntls_ca = {srv.cafile}\nfolder = INBOX\nafter_ingest = keep\n"
    )
    subprocess.run(["sync"], check=True)
    cmd = [sys.executable, str(REPO / "bin/imap_sync"), "--config", str(ini)]
    seconds = timed(cmd, env={**os.environ, "BENCHSYNC_NO_VENV": "1"})
    log = (work / "log" / "imap_sync.log").read_text().splitlines()[-1]
    if " status=ok" not in log:
        sys.exit(f"bench_imap: imap_sync did not succeed: {log}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("mbsync"):
        sys.exit("bench_imap: mbsync is not installed (apt-get install isync)")
    pg = start_postgres()
    srv = start_dovecot()
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            work = Path(tmp)
            fill(srv, make_mails(args.mails))
            bases, extracts, syncs = [], [], []
            for r in range(args.rounds):
                subprocess.run(["sync"], check=True)
                base, extract = baseline(srv, work)
                bases.append(base)
                extracts.append(extract)
                syncs.append(imap_sync(srv, work, pg, f"bench_imap_{r}"))
            rows = ", ".join(
                f"({b:.2f} + {e:.2f}, {s:.2f})"
                for b, e, s in zip(bases, extracts, syncs, strict=True)
            )
            print(f"  rounds (mbsync+md5sum+gzip + extraction, imap_sync) = {rows}")
            base, extract, sync = map(statistics.median, (bases, extracts, syncs))
            print(
                f"imap {args.mails} mails with a ~20 KB log: imap_sync {sync:.2f} s /"
                f" (mbsync + extract + md5sum + gzip -6) {base + extract:.2f} s"
                f" = {sync / (base + extract):.2f}x (target <= 2, aim <= 1)\n"
                f"  strict, extraction not counted: {sync:.2f} s / {base:.2f} s"
                f" = {sync / base:.2f}x",
                flush=True,
            )
    finally:
        srv.stop()
        pg.stop()


if __name__ == "__main__":
    main()
