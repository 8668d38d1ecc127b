"""`benchmark-post`, the user-end client, run as a real process against a real server."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, REPO, Workspace, md5, sample_log
from test_http_api import ALICE, TOKENS, Server, free_port, start_server

CLIENT = BIN / "benchmark-post"


def post(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout=60):
    """Run bin/benchmark-post with a clean environment (no BENCHSYNC_* leaking in)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BENCHSYNC_")}
    return subprocess.run(
        [str(CLIENT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture
def srv(ws_sqlite: Workspace):
    server = start_server(ws_sqlite, max_upload_bytes="2 MiB")
    yield server
    server.stop()


def test_each_file_gets_one_line_and_exit_0_when_all_are_accepted(srv: Server) -> None:
    a, b = srv.ws.root / "run-1-benchmark.log", srv.ws.root / "summary"
    a.write_bytes(sample_log(1))
    b.write_bytes(sample_log(2))
    srv.request("POST", "/api/v1/logs", b.read_bytes())
    p = post(str(a), str(b), "--url", srv.url, "--token", ALICE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        f"new        {a}  md5={md5(a.read_bytes())} file_id=2",
        f"duplicate  {b}  md5={md5(b.read_bytes())} file_id=1",
    ]
    assert p.stderr == ""
    assert srv.ws.rows("SELECT original_name, submitter FROM receipts ORDER BY id") == [
        (None, "alice"),  # posted first without a name; alice's repeat adds no receipt
        ("run-1-benchmark.log", "alice"),
    ]


def test_url_and_token_come_from_the_environment(srv: Server) -> None:
    log = srv.ws.root / "run-2-benchmark.log"
    log.write_bytes(sample_log(3))
    env = {"BENCHSYNC_URL": srv.url + "/api/v1/logs", "BENCHSYNC_TOKEN": TOKENS["bob"]}
    p = post(str(log), env=env)
    assert p.returncode == 0 and p.stdout.startswith("new "), p.stdout + p.stderr
    assert srv.ws.rows("SELECT submitter FROM receipts") == [("bob",)]


def test_a_refused_file_makes_exit_1_and_the_others_are_still_posted(srv: Server) -> None:
    root = srv.ws.root
    (root / "empty.log").write_bytes(b"")
    (root / "big.log").write_bytes(sample_log(4, 3 * 1024 * 1024))  # over the 2 MiB limit
    (root / "good.log").write_bytes(sample_log(5))
    names = ["empty.log", "big.log", "missing.log", "good.log"]
    p = post(*names, "--url", srv.url, "--token", ALICE, "--retries", "0", cwd=root)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "error      empty.log  empty file, not sent"
    assert lines[1].startswith("error      big.log  413 too large: over max_upload_bytes")
    assert lines[2].startswith("error      missing.log  cannot read: No such file")
    assert lines[3].startswith(f"new        good.log  md5={md5(sample_log(5))}")
    assert srv.ws.count("files") == 1


def test_a_wrong_token_is_an_error_line_not_a_retry(srv: Server) -> None:
    (srv.ws.root / "a.log").write_bytes(sample_log(6))
    p = post("a.log", "--url", srv.url, "--token", "wrong-0123456789abcdef", cwd=srv.ws.root)
    assert p.returncode == 1
    assert p.stdout == "error      a.log  401 unknown token\n"
    assert "retrying" not in p.stderr


def test_an_unreachable_server_is_retried_with_backoff_then_exit_3(tmp_path: Path) -> None:
    for i in (1, 2):
        (tmp_path / f"{i}.log").write_bytes(sample_log(i))
    url = f"http://127.0.0.1:{free_port()}"
    args = ["--url", url, "--token", "t", "--retries", "2", "--backoff", "0.05"]
    p = post("1.log", "2.log", *args, cwd=tmp_path)
    assert p.returncode == 3
    assert p.stderr.count("retrying 1.log") == 2
    assert p.stdout.splitlines() == [
        "error      1.log  cannot reach the server: Connection refused",
        "error      2.log  not sent: cannot reach the server: Connection refused",
    ]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"alice {ALICE}\n")
    token.chmod(0o644)
    (tmp_path / "a.log").write_bytes(b"x")
    p = post("a.log", "--url", "http://127.0.0.1:9", "--token-file", str(token), cwd=tmp_path)
    assert p.returncode == 2 and "chmod 600" in p.stderr
    assert ALICE not in p.stderr + p.stdout
    p = post("a.log", cwd=tmp_path)
    assert p.returncode == 2 and "BENCHSYNC_URL" in p.stderr
    p = post("a.log", "--url", "ftp://host/", cwd=tmp_path)
    assert p.returncode == 2
    assert post(cwd=tmp_path).returncode == 2


def test_a_token_file_with_a_name_token_line_works(srv: Server) -> None:
    token = srv.ws.root / "my.token"
    token.write_text(f"# copied from the server\nalice {ALICE}\n")
    token.chmod(0o600)
    (srv.ws.root / "a.log").write_bytes(sample_log(7))
    p = post("a.log", "--url", srv.url, "--token-file", str(token), cwd=srv.ws.root)
    assert p.returncode == 0, p.stdout + p.stderr


def test_run_posts_the_logs_the_command_wrote_and_keeps_its_exit_code(srv: Server) -> None:
    work = srv.ws.root / "bench"
    work.mkdir()
    (work / "run-1-benchmark.log").write_bytes(sample_log(8))  # an older run: not posted
    (work / "notes.txt").write_text("not a log")
    script = (
        "printf 'B R L - C A D   B E N C H M A R K\\nrun 9\\n' > run-999-benchmark.log;"
        " printf 'Abs\\tvm\\t1\\n' > summary; echo noise > other.log; exit 4"
    )
    env = {"BENCHSYNC_URL": srv.url, "BENCHSYNC_TOKEN": ALICE}
    p = post("--run", "--", "sh", "-c", script, cwd=work, env=env)
    assert p.returncode == 4, "the command's failure is passed on"
    outcome = [line.split()[:2] for line in p.stdout.splitlines()]
    assert outcome == [["new", "run-999-benchmark.log"], ["new", "summary"]]
    assert sorted(r[0] for r in srv.ws.rows("SELECT original_name FROM receipts")) == [
        "run-999-benchmark.log",
        "summary",
    ]
    p = post("--run", "--", "true", cwd=work, env=env)
    assert p.returncode == 1 and "wrote no new" in p.stderr
    p = post("--run", "--", "no-such-command-xyz", cwd=work, env=env)
    assert p.returncode == 2 and "cannot run no-such-command-xyz" in p.stderr


def test_the_client_is_one_standalone_python38_file(tmp_path: Path) -> None:
    assert CLIENT.is_symlink() and os.readlink(CLIENT) == "../lib/benchsync/post_client.py"
    source = CLIENT.resolve()
    assert os.access(source, os.X_OK)
    text = source.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    tree = ast.parse(text, feature_version=(3, 8))  # no syntax newer than Python 3.8
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported
    copy = tmp_path / "benchmark-post"
    shutil.copy(CLIENT, copy)  # follows the link: `cp bin/benchmark-post ~/bin/` copies the script
    assert not copy.is_symlink()
    p = subprocess.run([sys.executable, "-I", str(copy), "--version"], capture_output=True)
    assert p.returncode == 0 and p.stdout.strip() == b"benchmark-post 1.0"
    p = subprocess.run(
        [sys.executable, "-c", "from benchsync.post_client import main; print(main.__doc__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "lib")},
    )
    assert p.returncode == 0 and "console script" in p.stdout
