"""The HTTP API end to end: `bin/benchsync serve` as a real process, posted to with curl.

Also holds the helpers the other HTTP tests import: `start_server()` and `Server`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BIN, Workspace, md5, sample_log, stored_bytes

TOKENS = {"alice": "alice-0123456789abcdef0123", "bob": "bob-0123456789abcdef012345"}
ALICE = TOKENS["alice"]
REQUEST_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ http_receiver\[\d+\] INFO request method=(\S+)"
    r" path=(\S+) status=(\d+) md5=(\S+) submitter=(\S+) bytes=(\d+) ms=[\d.]+ client=\S+$",
    re.M,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running `benchsync serve` on a loopback port."""

    ws: Workspace
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        token: str | None = ALICE,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        """One request with the stdlib client; (status, JSON body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            h = dict(headers or {})
            if token is not None:
                h["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def curl(self, *args: str, token: str | None = ALICE, path: str = "/api/v1/logs"):
        """Run the real curl binary; (status, JSON body)."""
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        p = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", *auth, *args, self.url + path],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        body, _, code = p.stdout.rpartition("\n")
        return int(code), json.loads(body or "{}")

    def log(self) -> str:
        return self.ws.log_text("http_receiver")

    def output(self) -> str:
        """What the server printed (stdout and stderr)."""
        return (self.ws.root / "serve.out").read_text(errors="replace")

    def requests_logged(self) -> list[tuple[str, ...]]:
        return REQUEST_LINE.findall(self.log())

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def write_tokens(ws: Workspace, mode: int = 0o600) -> Path:
    path = ws.root / "tokens"
    path.write_text("# name token\n" + "".join(f"{n} {t}\n" for n, t in TOKENS.items()))
    path.chmod(mode)
    return path


def start_server(ws: Workspace, wait: bool = True, **http: str) -> Server:
    """Configure [http], start `bin/benchsync serve` and wait until /healthz answers."""
    if not (ws.root / "tokens").exists():
        write_tokens(ws)
    ws.configure(http={"token_file": "tokens", "threads": "8", **http})
    port = free_port()
    out = open(ws.root / "serve.out", "ab")
    proc = subprocess.Popen(
        [sys.executable, str(BIN / "benchsync"), "serve", "--config", str(ws.config)]
        + ["--listen", f"127.0.0.1:{port}"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
    )
    out.close()
    server = Server(ws, proc, port)
    deadline = time.monotonic() + 30
    while wait and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {server.output()}")
        try:
            if server.request("GET", "/healthz")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.05)
    if wait:
        server.stop()
        raise AssertionError("serve did not answer /healthz within 30 s")
    return server


@pytest.fixture
def server(ws: Workspace):
    """The API on each database dialect, tokens for alice and bob."""
    srv = start_server(ws)
    yield srv
    srv.stop()


@pytest.fixture
def server_sqlite(ws_sqlite: Workspace):
    """The API on SQLite, for tests about HTTP rather than databases."""
    srv = start_server(ws_sqlite, max_upload_bytes="100000")
    yield srv
    srv.stop()


# --------------------------------------------------------------------------- filing


def test_a_log_posted_with_curl_is_filed_and_a_repeat_is_a_duplicate(server: Server) -> None:
    ws = server.ws
    log = ws.root / "run-5018-benchmark.log"
    data = sample_log(1, 20_000)
    log.write_bytes(data)
    args = ["--data-binary", f"@{log}", "-H", "X-Filename: run-5018-benchmark.log"]
    status, body = server.curl(*args, "-H", "Content-Type: text/plain")
    assert status == 201, body
    assert body["md5"] == md5(data) and body["status"] == "new"
    assert body["file_id"] == ws.rows("SELECT id FROM files")[0][0]
    assert "parse_status" in body
    assert stored_bytes(ws.store, md5(data)) == data
    again = server.curl(*args)  # curl's default form content type: still the raw body
    assert again[0] == 200 and again[1]["status"] == "duplicate", again
    assert ws.count("files") == 1
    [receipt] = ws.rows(
        "SELECT channel, source, item, original_name, submitter, run_id FROM receipts"
    )
    [(run_id, job, status_)] = ws.rows("SELECT id, job, status FROM runs")
    assert receipt == (
        "http",
        "http",
        f"alice:{md5(data)}",
        "run-5018-benchmark.log",
        "alice",
        run_id,
    )
    assert (job, status_) == ("http_receiver", "running")
    posts = [r for r in server.requests_logged() if r[0] == "POST"]
    assert posts == [
        ("POST", "/api/v1/logs", "201", md5(data), "alice", str(len(data))),
        ("POST", "/api/v1/logs", "200", md5(data), "alice", str(len(data))),
    ]
    assert ALICE not in server.log(), "tokens are never logged"


def test_the_same_log_from_another_submitter_adds_a_receipt_not_a_file(server: Server) -> None:
    data = sample_log(2)
    assert server.request("POST", "/api/v1/logs", data)[0] == 201
    assert server.request("POST", "/api/v1/logs", data, token=TOKENS["bob"])[0] == 200
    assert server.ws.count("files") == 1
    assert sorted(server.ws.rows("SELECT submitter FROM receipts")) == [("alice",), ("bob",)]


def test_several_file_fields_in_one_form_are_each_filed(server: Server) -> None:
    ws = server.ws
    a, b = ws.root / "run-1-benchmark.log", ws.root / "summary"
    a.write_bytes(sample_log(3))
    b.write_bytes(b"Abs\tvm\t1\t2\n*vgr\tvm\t3\n")
    status, body = server.curl("-F", f"file=@{a}", "-F", "note=hello", "-F", f"file=@{b}")
    assert status == 201, body
    assert [(f["name"], f["status"], f["md5"]) for f in body["files"]] == [
        ("run-1-benchmark.log", "new", md5(a.read_bytes())),
        ("summary", "new", md5(b.read_bytes())),
    ]
    assert stored_bytes(ws.store, md5(b.read_bytes())) == b.read_bytes()
    assert sorted(ws.rows("SELECT original_name FROM receipts")) == [
        ("run-1-benchmark.log",),
        ("summary",),
    ]


def test_lookup_tells_whether_and_when_a_log_was_filed(server_sqlite: Server) -> None:
    srv = server_sqlite
    data = sample_log(4)
    srv.request("POST", "/api/v1/logs", data, headers={"X-Filename": "a.log"})
    status, body = srv.request("GET", f"/api/v1/logs/{md5(data)}")
    assert status == 200
    assert body["filed"] is True and body["size"] == len(data) and body["receipts"] == 1
    assert body["first_seen_at"].startswith(time.strftime("%Y-", time.gmtime()))
    assert srv.request("GET", f"/api/v1/logs/{'0' * 32}") == (
        404,
        {"md5": "0" * 32, "filed": False},
    )
    assert srv.request("GET", "/api/v1/logs/not-an-md5")[0] == 400
    assert srv.request("GET", f"/api/v1/logs/{md5(data)}", token=None)[0] == 401
    assert srv.request("GET", "/healthz", token=None) == (200, {"status": "ok"})
    assert srv.request("DELETE", "/api/v1/logs")[0] == 405
    assert srv.request("GET", "/elsewhere")[0] == 404


# --------------------------------------------------------------------------- bad input


def test_posts_without_a_valid_token_are_refused_with_401(server_sqlite: Server) -> None:
    srv = server_sqlite
    data = sample_log(5)
    for token in (None, "wrong-token-0123456789abcdef"):
        status, body = srv.request("POST", "/api/v1/logs", data, token=token)
        assert status == 401 and "token" in body["error"]
    basic = {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    assert srv.request("POST", "/api/v1/logs", data, token=None, headers=basic)[0] == 401
    assert srv.curl("--data-binary", "x", token=None)[0] == 401
    assert srv.ws.count("files") == 0 and srv.ws.count("receipts") == 0
    statuses = [r[2] for r in srv.requests_logged() if r[0] == "POST"]
    assert statuses == ["401"] * 4


def test_anonymous_posts_are_filed_only_when_allowed(ws_sqlite: Workspace) -> None:
    srv = start_server(ws_sqlite, allow_anonymous="true")
    try:
        data = sample_log(6)
        assert srv.request("POST", "/api/v1/logs", data, token=None)[0] == 201
        bad = srv.request("POST", "/api/v1/logs", data, token="not-a-listed-token-0000")
        assert bad[0] == 401, "a wrong token is refused even when anonymous posts are allowed"
        assert ws_sqlite.rows("SELECT item, submitter FROM receipts") == [
            (f"anonymous:{md5(data)}", None)
        ]
    finally:
        srv.stop()


def test_an_empty_body_or_form_is_refused_with_400(server_sqlite: Server) -> None:
    srv = server_sqlite
    empty = srv.ws.root / "empty.log"
    empty.write_bytes(b"")
    assert srv.curl("--data-binary", f"@{empty}")[0] == 400
    status, body = srv.curl("-F", f"file=@{empty}")
    assert status == 400 and "empty" in body["error"]
    status, body = srv.curl("-F", "comment=no file here")
    assert status == 400 and "file" in body["error"]
    cut = b"--XyZ\r\nContent-Disposition: form-data; name=file; filename=a.log\r\n\r\nabc"
    status, body = srv.request(
        "POST", "/api/v1/logs", cut, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert status == 400 and "boundary" in body["error"]
    assert srv.ws.count("files") == 0 and srv.ws.count("receipts") == 0
    assert list((srv.ws.store / "tmp").iterdir()) == [], "no temp file left behind"


def test_a_body_at_the_limit_is_filed_and_one_byte_over_is_refused_with_413(
    server_sqlite: Server,
) -> None:
    srv = server_sqlite  # max_upload_bytes = 100000
    at_limit = sample_log(7, 100_000)
    assert srv.request("POST", "/api/v1/logs", at_limit)[0] == 201
    status, body = srv.request("POST", "/api/v1/logs", sample_log(8, 100_001))
    assert status == 413 and "max_upload_bytes" in body["error"]
    big = srv.ws.root / "big.log"
    big.write_bytes(sample_log(9, 3_000_000))
    assert srv.curl("--data-binary", f"@{big}")[0] == 413
    assert srv.curl("-F", f"file=@{big}")[0] == 413
    assert srv.ws.count("files") == 1
    assert "WARNING refused status=413" in srv.log()


def test_the_server_answers_413_before_an_oversized_body_is_sent(server_sqlite: Server) -> None:
    srv = server_sqlite
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(
            b"POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + ALICE.encode()
            + b"\r\nContent-Length: 10000000000\r\n\r\n"
        )
        answer = _read_until_closed(s)  # no body byte was sent, yet the answer comes
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"error"' in answer
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(
            b"POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + ALICE.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        chunk = b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000)
        try:
            while sent < 5_000_000:  # the server stops reading soon after 100 kB
                s.sendall(chunk)
                sent += 10_000
        except OSError:
            pass
        answer = _read_until_closed(s)
    assert sent < 5_000_000, "the server kept reading an oversized chunked body"
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert srv.ws.count("files") == 0


def _read_until_closed(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


def test_a_hostile_file_name_is_refused_and_nothing_is_written_outside_the_store(
    server_sqlite: Server,
) -> None:
    srv = server_sqlite
    data = sample_log(10)
    form = (
        b'--b0undary\r\nContent-Disposition: form-data; name="file";'
        b' filename="../../escaped.log"\r\nContent-Type: text/plain\r\n\r\n'
        + data
        + b"\r\n--b0undary--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b0undary"}
    status, body = srv.request("POST", "/api/v1/logs", form, headers=headers)
    assert status == 400 and "hostile name" in body["error"], body
    status, body = srv.request("POST", "/api/v1/logs", data, headers={"X-Filename": "../x.log"})
    assert status == 400 and "hostile name" in body["error"], body
    assert srv.ws.count("files") == 0
    found = [p for p in srv.ws.root.parent.rglob("*escaped*")] + list(
        srv.ws.root.parent.rglob("x.log")
    )
    assert found == []
    assert re.search(r"WARNING refused status=400 submitter=alice reason=.*hostile name", srv.log())


def test_a_token_file_readable_by_others_stops_the_server_with_exit_2(
    ws_sqlite: Workspace,
) -> None:
    write_tokens(ws_sqlite, mode=0o644)
    srv = start_server(ws_sqlite, wait=False)
    assert srv.proc.wait(30) == 2
    assert "chmod 600" in srv.output()
    assert "chmod 600" in srv.log()
    for token in TOKENS.values():
        assert token not in srv.output() + srv.log()


def test_an_unreachable_database_or_a_busy_port_stops_the_server_at_start(
    ws_sqlite: Workspace,
) -> None:
    first = start_server(ws_sqlite)
    try:
        busy = subprocess.run(
            [sys.executable, str(BIN / "benchsync"), "serve", "--config", str(ws_sqlite.config)]
            + ["--listen", f"127.0.0.1:{first.port}"],
            capture_output=True,
            text=True,
            env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
            timeout=60,
        )
    finally:
        first.stop()
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{first.port}" in busy.stderr
    assert "Traceback" not in busy.stderr
    ws_sqlite.configure(database={"url": f"postgresql://postgres@127.0.0.1:{free_port()}/x"})
    down = start_server(ws_sqlite, wait=False)
    assert down.proc.wait(60) == 3
    assert "database" in down.output() and "Traceback" not in down.output()


def test_sigterm_closes_the_servers_run_with_its_counts(server_sqlite: Server) -> None:
    srv = server_sqlite
    srv.request("POST", "/api/v1/logs", sample_log(11))
    srv.request("POST", "/api/v1/logs", sample_log(11))
    srv.request("POST", "/api/v1/logs", b"")
    assert srv.stop() == 0
    [row] = srv.ws.rows("SELECT status, n_seen, n_new, n_dup, n_failed, finished_at FROM runs")
    assert row[:5] == ("ok", 2, 1, 1, 1) and row[5] is not None
    assert re.search(
        r"INFO run=1 done seen=2 new=1 dup=1 failed=1 skipped=0 .* status=ok$", srv.log()
    )


# --------------------------------------------------------------------------- concurrency


def test_100_concurrent_uploads_of_the_same_content_make_one_file(server: Server) -> None:
    ws = server.ws
    data = sample_log(12, 20_000)
    (ws.root / "same.log").write_bytes(data)
    procs = []
    for name in ("alice", "bob"):  # 50 parallel transfers from each curl process
        urls = [f"{server.url}/api/v1/logs", "-o", "/dev/null"] * 50  # -o pairs with a URL
        procs.append(
            subprocess.Popen(
                ["curl", "-sS", "-Z", "--parallel-immediate", "--parallel-max", "50"]
                + ["-H", f"Authorization: Bearer {TOKENS[name]}", "-H", "X-Filename: same.log"]
                + ["--data-binary", f"@{ws.root / 'same.log'}"]
                + ["-w", "%{http_code}\n", *urls],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    codes = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        codes += out.split()
    assert sorted(codes) == ["200"] * 99 + ["201"]
    assert ws.count("files") == 1
    assert sorted(ws.rows("SELECT submitter, item FROM receipts")) == [
        ("alice", f"alice:{md5(data)}"),
        ("bob", f"bob:{md5(data)}"),
    ]
    assert stored_bytes(ws.store, md5(data)) == data
    assert list((ws.store / "tmp").iterdir()) == []
    logged = [r[2] for r in server.requests_logged() if r[0] == "POST"]
    assert sorted(logged) == ["200"] * 99 + ["201"]
