"""scp_sync reads small files ahead (`SftpSource.prefetch`): same bytes, same errors, no
leaked remote handle, and a dying sshd still stops the run with nothing half-filed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchsync.errors import ItemError, SourceUnreachable
from benchsync.sources.base import Item
from benchsync.sources.sftp import AHEAD_ITEM_BYTES, AHEAD_ITEMS, SftpSource
from benchsync.sources.ssh import SshOptions, load_key
from conftest import BIN, Workspace, md5, sample_log, stored_bytes
from server_fixtures import require_or_skip
from servers.servers import ServerUnavailable, start_sshd
from test_sftp import drop_folder, last_summary, use_sftp


def open_source(srv, folder: Path) -> SftpSource:
    """An SftpSource on `folder`, connected (the pipeline's view of the job)."""
    opts = SshOptions(
        host=srv.host,
        port=srv.port,
        user=srv.user,
        known_hosts=srv.known_hosts_file,
        key_file=srv.client_key,
        pkey=load_key(srv.client_key, None),
        timeout=10,
    )
    url = f"sftp://{srv.user}@{srv.host}:{srv.port}{folder}"
    source = SftpSource(opts, os.fsencode(folder), url, settle_seconds=0)
    source.open()
    return source


def read(source: SftpSource, item: Item) -> bytes | tuple[str, str]:
    """The item's bytes, or (error class, reason) when its fetch fails."""
    buf = bytearray()

    class Sink:
        def write(self, chunk: bytes) -> int:
            buf.extend(chunk)
            return len(chunk)

    try:
        for payload in source.fetch(item):
            payload.write_to(Sink())
    except ItemError as e:
        return type(e).__name__, e.reason
    return bytes(buf)


def open_in(folder: Path) -> list[str]:
    """Files under `folder` that some process (the sftp-server) holds open."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        found += [link for link in links if link.startswith(f"{folder}/")]
    return found


def test_every_size_is_filed_byte_for_byte(ws_sqlite: Workspace, sftp_server) -> None:
    ws, folder = ws_sqlite, drop_folder(sftp_server)
    use_sftp(ws, sftp_server, folder)
    sizes = [1, 100, 32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1, AHEAD_ITEM_BYTES]
    sizes += [AHEAD_ITEM_BYTES + 1, 3 * AHEAD_ITEM_BYTES + 7] + [20_000 + i for i in range(140)]
    contents = {f"f-{i:03d}.log": os.urandom(n) for i, n in enumerate(sizes)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    result = ws.run("scp-sync")
    assert result.code == 0, result.err
    assert last_summary(ws) == (
        f"seen={len(sizes)} new={len(sizes)} dup=0 failed=0 skipped=0",
        "ok",
    )
    filed = dict(ws.rows("SELECT r.item, f.md5 FROM receipts r JOIN files f ON f.id = r.file_id"))
    assert filed == {name: md5(data) for name, data in contents.items()}
    for data in contents.values():
        assert stored_bytes(ws.store, md5(data)) == data


def test_files_changed_after_the_listing_fail_as_they_do_without_prefetch(sftp_server) -> None:
    folder = drop_folder(sftp_server)
    for name in ("same", "grown", "shrunk", "gone", "dir-link", "late"):
        (folder / f"{name}.log").write_bytes(sample_log(len(name), 50_000))
    (folder / "a-folder").mkdir()
    ahead, direct = open_source(sftp_server, folder), open_source(sftp_server, folder)
    try:
        items = sorted((i for i in ahead.list() if not i.problem), key=lambda i: i.key)
        listed = {i.key: i for i in direct.list()}
        with open(folder / "grown.log", "ab") as f:
            f.write(b"more\n")
        os.truncate(folder / "shrunk.log", 10_000)
        (folder / "gone.log").unlink()
        (folder / "dir-link.log").unlink()
        os.symlink(folder / "a-folder", folder / "dir-link.log")
        ahead.prefetch(items)
        time.sleep(0.2)  # the replies to the reads ahead are in
        (folder / "late.log").unlink()  # read ahead already: it was there when read
        got = {i.key: read(ahead, i) for i in items}
        expected = {k: read(direct, listed[k]) for k in got}
    finally:
        ahead.close()
        direct.close()
    changed = "changed while being read: listed 50000 bytes, now {}; it will be read again"
    assert {k: v for k, v in expected.items() if k != "late.log"} == {
        "same.log": sample_log(4, 50_000),
        "grown.log": ("ItemError", changed.format(50_005)),
        "shrunk.log": ("ItemError", changed.format(10_000)),
        "gone.log": ("ItemError", "vanished before it could be read"),
        "dir-link.log": ("ItemRejected", "not a regular file when opened"),
    }
    assert got == {**expected, "late.log": sample_log(4, 50_000)}


def test_no_remote_handle_outlives_the_batch_or_the_connection(sftp_server) -> None:
    folder = drop_folder(sftp_server)
    for i in range(AHEAD_ITEMS + 8):
        (folder / f"{i:02d}.log").write_bytes(sample_log(i, 20_000))
    source = open_source(sftp_server, folder)
    try:
        items = sorted(source.list(), key=lambda i: i.key)
        source.prefetch(items)
        list(source.list())  # a round trip: the server has answered the OPENs
        assert len(open_in(folder)) == AHEAD_ITEMS, "read ahead: the handles are open"
        assert read(source, items[0]) == sample_log(0, 20_000)
        source.prefetch([])  # the next batch: what was never fetched is closed
        list(source.list())
        assert open_in(folder) == []
        assert read(source, items[5]) == sample_log(5, 20_000), "a plain read still works"

        source.prefetch(items[10:])
        assert read(source, items[10]) == sample_log(10, 20_000)
    finally:
        source.close()
    deadline = time.monotonic() + 5
    while open_in(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_in(folder) == []


def test_sshd_killed_while_reading_ahead_is_source_unreachable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for i in range(10):
        (home / f"{i}.log").write_bytes(sample_log(i, 20_000))
    try:
        srv = start_sshd(home=home)
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        source = open_source(srv, home)
        items = sorted(source.list(), key=lambda i: i.key)
        source.prefetch(items[:5])
        srv.kill()
        with pytest.raises(SourceUnreachable, match="connection lost"):
            for item in items:
                read(source, item)
        source.close()
    finally:
        srv.stop()


def test_sshd_killed_mid_run_of_small_files_is_exit_3_and_each_is_filed_once(
    ws_sqlite: Workspace, tmp_path: Path
) -> None:
    ws, n = ws_sqlite, 3000
    home = tmp_path / "home"
    home.mkdir()
    contents = {f"run-{i:05d}.log": sample_log(i, 20_000) for i in range(n)}
    for name, data in contents.items():
        (home / name).write_bytes(data)
    try:
        srv = start_sshd(home=home)
    except ServerUnavailable as exc:
        require_or_skip(exc)
    try:
        use_sftp(ws, srv, home, after_ingest="delete")
        cmd = [sys.executable, str(BIN / "benchsync"), "scp-sync", "--config", str(ws.config)]
        env = {**os.environ, "BENCHSYNC_NO_VENV": "1"}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not any(ws.store.rglob("*.gz")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before the first batch was filed"
            time.sleep(0.005)
        srv.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "connection lost" in err and "Traceback" not in err
        filed = ws.count("receipts")
        assert 0 < filed < n, "killed mid-run"
        assert len(os.listdir(home)) >= n - filed, "nothing deleted before it was filed"
    finally:
        srv.stop()
    again = start_sshd(home=home)
    try:
        use_sftp(ws, again, home, after_ingest="delete")
        result = ws.run("scp-sync")
        assert result.code == 0, result.err
    finally:
        again.stop()
    # the new sshd has a new port, so a new source URL: what run 1 filed is a dup now
    assert last_summary(ws) == (f"seen={n} new={n - filed} dup={filed} failed=0 skipped=0", "ok")
    assert ws.count("files") == n, "each content stored once"
    assert os.listdir(home) == []
    for data in list(contents.values())[::97]:
        assert stored_bytes(ws.store, md5(data)) == data
