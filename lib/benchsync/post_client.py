#!/usr/bin/env python3
"""benchmark-post: upload BRL-CAD benchmark logs to a benchsync server.

    benchmark-post run-*-benchmark.log summary --url https://bench.example.org
    benchmark-post --run -- benchmark run        # run it, then post the logs it wrote

One line a file: `new`, `duplicate` (the server already had these bytes) or `error`.
Exit 0 only when every file was accepted; 1 when the server refused one (or it could
not be read); 2 for a usage error; 3 when the server could not be reached (or kept
answering 5xx) after the retries. With --run, a failing command's exit code wins.

Retrying is safe: the server files content by md5, so a repeated upload is answered
`duplicate`, never filed twice. Standard library only, Python 3.8 or newer: copy this
one file anywhere. The token comes from --token, --token-file (mode 0600) or
$BENCHSYNC_TOKEN; the URL from --url or $BENCHSYNC_URL.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a file: its own folder must not shadow the stdlib
    _HERE = os.path.dirname(os.path.realpath(__file__))  # (lib/benchsync/ holds an `http`)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE]

import argparse
import hashlib
import http.client
import json
import random
import select
import ssl
import stat
import subprocess
import time
import urllib.parse

VERSION = "1.0"
API_PATH = "/api/v1/logs"
DEFAULT_PATTERNS = ("run-*-benchmark.log", "summary")
EXPECT_CONTINUE_ABOVE = 1024 * 1024  # like curl: ask before sending a large body
BLOCK = 64 * 1024
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Bad arguments or an unsafe token file (exit 2)."""


class Retryable(Exception):
    """The server could not be reached, or answered 5xx: worth trying again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """The server answered 4xx: sending the same file again will not help."""


# -- arguments -------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the command line; the environment fills in --url and the token."""
    p = argparse.ArgumentParser(
        prog="benchmark-post",
        description="Upload BRL-CAD benchmark logs to a benchsync server.",
        epilog="examples:\n"
        "  benchmark run && benchmark-post run-*-benchmark.log summary\n"
        "  benchmark-post --run -- benchmark run TIMEFRAME=1\n"
        "environment: BENCHSYNC_URL, BENCHSYNC_TOKEN",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files to upload")
    p.add_argument("--url", default=os.environ.get("BENCHSYNC_URL"), help="server URL")
    p.add_argument("--token", help="bearer token (visible in `ps`: prefer the file or env)")
    p.add_argument("--token-file", help="file holding the token (mode 0600)")
    p.add_argument("--cafile", help="CA bundle to verify an https server with")
    p.add_argument("--retries", type=int, default=5, help="retries per file (default 5)")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay, s (doubles)")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout, s")
    p.add_argument(
        "--run",
        action="store_true",
        help="FILE... is a command: run it, then post the logs it wrote in this folder",
    )
    p.add_argument(
        "--glob",
        action="append",
        metavar="PATTERN",
        help="with --run: names of logs to post (default: run-*-benchmark.log, summary)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--version", action="version", version="benchmark-post " + VERSION)
    args = p.parse_args(argv)
    if not args.files:
        p.error("name the files to post, or --run -- COMMAND")
    if args.retries < 0 or args.timeout <= 0 or args.backoff < 0:
        p.error("--retries, --backoff and --timeout must not be negative")
    return args


def read_token(args: argparse.Namespace) -> str | None:
    """--token, else --token-file (refused unless only its owner can read it), else env."""
    if args.token:
        return args.token.strip()
    if args.token_file:
        try:
            st = os.stat(args.token_file)
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UsageError(
                    f"refusing token file {args.token_file}: readable by group or others"
                    f" (run: chmod 600 {args.token_file})"
                )
            with open(args.token_file, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        except OSError as e:
            raise UsageError(f"cannot read token file {args.token_file}: {e.strerror}") from None
        if not lines:
            raise UsageError(f"token file {args.token_file} is empty")
        return lines[0].split()[-1]  # a `name token` line copied from the server works too
    return os.environ.get("BENCHSYNC_TOKEN") or None


def api_url(url: str | None) -> urllib.parse.SplitResult:
    """The POST URL: the server's base URL with /api/v1/logs added when missing."""
    if not url:
        raise UsageError("no server: pass --url URL or set BENCHSYNC_URL")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r}: use http://host:port or https://host")
    path = parts.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return parts._replace(path=path, query="", fragment="")


# -- one upload ------------------------------------------------------------------------
def file_md5(path: str) -> tuple[str, int]:
    """md5 and size of a file, read once in blocks."""
    h = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


class Client:
    """Posts files to one server, one connection per upload."""

    def __init__(self, url: urllib.parse.SplitResult, token: str | None, args) -> None:
        self.url = url
        self.token = token
        self.timeout = args.timeout
        self.context = None
        if url.scheme == "https":
            self.context = ssl.create_default_context(cafile=args.cafile)

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.url.hostname, self.url.port
        if self.url.scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def _headers(self, path: str, size: int) -> list[tuple[str, str]]:
        name = os.path.basename(path)
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size)),
            # header values travel as latin-1: send the UTF-8 bytes of the name as they are
            ("X-Filename", name.encode("utf-8", "surrogateescape").decode("latin-1")),
            ("User-Agent", "benchmark-post/" + VERSION),
            ("Accept", "application/json"),
        ]
        if self.token:
            headers.append(("Authorization", "Bearer " + self.token))
        if size > EXPECT_CONTINUE_ABOVE:
            headers.append(("Expect", "100-continue"))
        return headers

    def post(self, path: str, size: int) -> dict:
        """One attempt: POST the file; the JSON answer, Refused (4xx) or Retryable."""
        conn = self._connection()
        try:
            conn.putrequest("POST", self.url.path, skip_accept_encoding=True)
            for key, value in self._headers(path, size):
                conn.putheader(key, value)
            conn.endheaders()
            early = _early_answer(conn) if size > EXPECT_CONTINUE_ABOVE else None
            if early is not None:
                return _answer(*early)
            send_error = None
            try:
                with open(path, "rb") as f:
                    while True:
                        block = f.read(BLOCK)
                        if not block:
                            break
                        conn.send(block)
            except (BrokenPipeError, ConnectionResetError) as e:
                send_error = e  # the server may have answered (413) and closed: read it
            try:
                resp = conn.getresponse()
                status, body, retry_after = resp.status, resp.read(), resp.getheader("Retry-After")
            except (OSError, http.client.HTTPException) as e:
                raise Retryable(_why(send_error or e)) from None
            return _answer(status, body, retry_after)
        except (OSError, http.client.HTTPException) as e:
            raise Retryable(_why(e)) from None
        finally:
            conn.close()


def _early_answer(conn: http.client.HTTPConnection) -> tuple[int, bytes, str | None] | None:
    """After `Expect: 100-continue` (RFC 9110 §10.1.1): None to send the body, or the
    final answer the server gave instead (e.g. 413). No answer in 2 s: send anyway."""
    ready, _, _ = select.select([conn.sock], [], [], 2.0)
    if not ready:
        return None
    fp = conn.sock.makefile("rb")
    try:
        status_line = fp.readline(65537).decode("latin-1")
        headers = {}
        while True:
            line = fp.readline(65537).decode("latin-1").strip()
            if not line:
                break
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        words = status_line.split()
        if len(words) < 2 or not words[1].isdigit():
            raise Retryable(f"malformed answer from the server: {status_line[:80]!r}")
        status = int(words[1])
        if status == 100:
            return None
        length = int(headers.get("content-length") or 0)
        return status, fp.read(length), headers.get("retry-after")
    finally:
        fp.close()


def _answer(status: int, body: bytes, retry_after: str | None) -> dict:
    """A 2xx answer's JSON; Retryable for 5xx, Refused for any other status."""
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError):
        data = {"error": body[:200].decode("utf-8", "replace").strip()}
    if not isinstance(data, dict):
        data = {"error": str(data)}
    if status in (200, 201):
        return data
    message = f"{status} {data.get('error') or ''}"
    if status >= 500:
        try:
            wait = float(retry_after) if retry_after else None
        except ValueError:
            wait = None
        raise Retryable(message.strip(), wait)
    raise Refused(message.strip())


def _why(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"cannot reach the server: {text}"


# -- the run ---------------------------------------------------------------------------
def post_with_retries(client: Client, path: str, args, say) -> tuple[str, str]:
    """Upload one file, retrying connection errors and 5xx; return (outcome, detail)."""
    try:
        md5, size = file_md5(path)
    except OSError as e:
        return "error", f"cannot read: {e.strerror}"
    if size == 0:
        return "error", "empty file, not sent"
    delay = args.backoff
    for attempt in range(args.retries + 1):
        try:
            answer = client.post(path, size)
        except Refused as e:
            return "error", str(e)
        except Retryable as e:
            if attempt == args.retries:
                return "unreachable", str(e)
            wait = min(max(delay, e.retry_after or 0), 60) * random.uniform(0.8, 1.2)
            say(f"retrying {path} in {wait:.1f} s: {e}")
            time.sleep(wait)
            delay = min(delay * 2, 30)
            continue
        if answer.get("md5") != md5:
            return "error", "server filed md5 {}, file has {}".format(answer.get("md5"), md5)
        status = "new" if answer.get("status") == "new" else "duplicate"
        return status, "md5={} file_id={}".format(md5, answer.get("file_id"))
    return "unreachable", "no attempt made"  # pragma: no cover - the loop always returns


def post_files(paths: list[str], args) -> int:
    """Post each file and print one line for it; the exit code for the whole lot."""
    url = api_url(args.url)
    client = Client(url, read_token(args), args)

    def say(message: str) -> None:
        if not args.quiet:
            print("benchmark-post: " + message, file=sys.stderr, flush=True)

    code = EXIT_OK
    unreachable = None
    for path in paths:
        if unreachable is not None:
            outcome, detail = "unreachable", "not sent: " + unreachable
        else:
            outcome, detail = post_with_retries(client, path, args, say)
        if outcome == "unreachable":
            unreachable = unreachable or detail
            code = EXIT_UNREACHABLE
        elif outcome == "error" and code == EXIT_OK:
            code = EXIT_REFUSED
        if outcome in ("new", "duplicate"):
            if not args.quiet:
                print(f"{outcome:<9}  {path}  {detail}", flush=True)
        else:
            print(f"{'error':<9}  {path}  {detail}", flush=True)
    return code


def snapshot(patterns: list[str]) -> dict[str, tuple[int, int]]:
    """(mtime, size) of the files in the current folder that match the patterns."""
    import fnmatch

    found = {}
    for entry in os.scandir("."):
        if entry.is_file() and any(fnmatch.fnmatchcase(entry.name, p) for p in patterns):
            st = entry.stat()
            found[entry.name] = (st.st_mtime_ns, st.st_size)
    return found


def run_and_post(args) -> int:
    """Run the command, then post the matching logs it created or changed in this folder."""
    api_url(args.url)  # fail before a long benchmark run, not after it
    read_token(args)
    patterns = args.glob or list(DEFAULT_PATTERNS)
    before = snapshot(patterns)
    try:
        rc = subprocess.call(args.files)
    except OSError as e:
        raise UsageError(f"cannot run {args.files[0]}: {e.strerror}") from None
    after = snapshot(patterns)
    written = sorted(n for n, sig in after.items() if before.get(n) != sig)
    if not written:
        print(
            f"benchmark-post: {args.files[0]} wrote no new {' or '.join(patterns)}"
            f" in {os.getcwd()}",
            file=sys.stderr,
        )
        return rc or EXIT_REFUSED
    written.sort(key=lambda n: n == "summary")  # the run log first
    code = post_files(written, args)
    return rc or code


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `benchmark-post` console script and of this file."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code = run_and_post(args) if args.run else post_files(args.files, args)
    except UsageError as e:
        print(f"benchmark-post: error: {e}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("benchmark-post: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
