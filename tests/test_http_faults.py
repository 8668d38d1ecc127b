"""The HTTP API when the database or the store goes away: 503, nothing half-filed, recovery."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, Workspace, md5, sample_log, stored_bytes
from server_fixtures import require_or_skip
from servers.servers import PgServer, ServerUnavailable, start_postgres
from test_http_api import ALICE, Server, start_server


@pytest.fixture
def private_pg() -> Iterator[PgServer]:
    """A PostgreSQL of this test's own, so it can be killed without hurting other tests."""
    try:
        pg = start_postgres()
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        yield pg
    finally:
        pg.stop()


def workspace(root: Path, url: str) -> Workspace:
    ws = Workspace(root, url)
    root.mkdir()
    ws.configure(
        database={"url": url}, store={"root": "store"}, logs={"dir": "log"}, locks={"dir": "lock"}
    )
    return ws


def assert_nothing_half_filed(ws: Workspace) -> None:
    """Every files row has its stored file and at least one receipt."""
    for (digest,) in ws.rows("SELECT md5 FROM files"):
        assert (ws.store / digest[:2] / f"{digest}.gz").is_file(), digest
    orphans = ws.rows(
        "SELECT COUNT(*) FROM files f WHERE NOT EXISTS"
        " (SELECT 1 FROM receipts r WHERE r.file_id = f.id)"
    )
    assert orphans == [(0,)]


class Load(threading.Thread):
    """Posts distinct logs in a loop and remembers each answer's status."""

    def __init__(self, server: Server, seed: int) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.seed = seed
        self.answers: list[tuple[str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            data = sample_log(self.seed * 100_000 + i, 5000)
            i += 1
            try:
                status, _ = self.server.request("POST", "/api/v1/logs", data)
            except OSError:
                status = 0
            self.answers.append((md5(data), status))


def test_database_killed_mid_run_answers_503_files_nothing_half_and_a_retry_succeeds(
    tmp_path: Path, private_pg: PgServer
) -> None:
    ws = workspace(tmp_path / "ws", private_pg.create_database("http_faults"))
    srv = start_server(ws)
    try:
        loads = [Load(srv, seed) for seed in range(1, 4)]
        for load in loads:
            load.start()
        time.sleep(0.7)
        private_pg.kill_hard()  # the database vanishes under running uploads
        late = tmp_path / "run-77-benchmark.log"
        late.write_bytes(sample_log(77))
        status, body = srv.request("POST", "/api/v1/logs", late.read_bytes())
        assert status == 503 and "unavailable" in body["error"], body
        assert srv.request("GET", "/healthz")[0] == 503
        client = subprocess.Popen(
            [str(BIN / "benchmark-post"), str(late), "--url", srv.url, "--token", ALICE]
            + ["--retries", "30", "--backoff", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        private_pg.restart()
        out, err = client.communicate(timeout=90)
        time.sleep(0.5)
        for load in loads:
            load.stop.set()
            load.join(30)
    finally:
        srv.stop()
    assert client.returncode == 0, out + err
    assert out.startswith("new ") and md5(late.read_bytes()) in out
    assert "retrying" in err and "503" in err
    answers = [a for load in loads for a in load.answers]
    statuses = {s for _, s in answers}
    assert 503 in statuses and 201 in statuses, statuses
    assert statuses <= {201, 503}, f"only filed or 'retry later': {statuses}"
    filed = {m for (m,) in ws.rows("SELECT md5 FROM files")}
    assert {m for m, s in answers if s == 201} <= filed, "a 201 answer was not durable"
    assert md5(late.read_bytes()) in filed
    assert_nothing_half_filed(ws)
    assert stored_bytes(ws.store, md5(late.read_bytes())) == late.read_bytes()
    assert "ERROR unavailable: database" in srv.log()


def test_an_unwritable_store_answers_503_and_files_nothing(ws_sqlite: Workspace) -> None:
    srv = start_server(ws_sqlite)
    try:
        tmp = ws_sqlite.store / "tmp"
        tmp.rmdir()
        tmp.write_text("a file where the store's temp folder should be")
        data = sample_log(1)
        status, body = srv.request("POST", "/api/v1/logs", data)
        assert status == 503 and "store" in body["error"], body
        assert srv.request("GET", "/healthz")[0] == 503
        assert ws_sqlite.count("files") == 0 and ws_sqlite.count("receipts") == 0
        tmp.unlink()
        tmp.mkdir()
        assert srv.request("POST", "/api/v1/logs", data)[0] == 201
    finally:
        srv.stop()
    assert_nothing_half_filed(ws_sqlite)
