"""A drop folder on an SSH host, read with SFTP (draft-ietf-secsh-filexfer-02, version 3).

`[scp] source = sftp://user@host[:port]/path` — `/path` is absolute; `/~/path` is
relative to the login folder (as curl reads it).

Speed: one SSH connection per run, with TCP_NODELAY. The folder is listed once (OPENDIR,
READDIR until EOF: OpenSSH sends up to 100 names per reply). A file is read with its
READ requests pipelined (§6.4 allows several outstanding requests; replies are matched by
id), together with an FSTAT, and closed without waiting for the reply: two round trips
per small file. paramiko's `SFTPFile.read()` in small chunks waits for each reply and is
~15x slower; its `getfo` adds a STAT and a thread per file.

Those two round trips are overlapped across files: `prefetch()` sends the OPENs of the
next small files (up to AHEAD_ITEMS, AHEAD_BYTES) at once, and each HANDLE reply, as
it arrives, sends that file's FSTAT and READs. `fetch()` of such a file then only
consumes replies already on their way, with the same checks as a direct read; a
handle whose file is never fetched is closed when the next batch is planned or at
`close()`.

Names are kept as bytes (paramiko's `listdir_attr` decodes them as strict UTF-8 and
would fail the whole listing on one bad name); hostile ones are rejected by the pipeline.

The settle clock is ours: SFTP has no way to ask the server's time short of writing a
probe file into the drop folder. A file whose mtime is ahead of our clock is simply not
old enough yet; the unchanged-across-two-polls rule does not depend on clocks at all.
"""

from __future__ import annotations

import getpass
import logging
import posixpath
import stat
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_STATUS,
    SFTP_EOF,
    SFTP_FLAG_READ,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from ..config import Section
from ..errors import ConfigError, ItemError, ItemRejected, SourceUnreachable
from .base import (
    AfterIngest,
    Item,
    Payload,
    Source,
    Writer,
    mode_problem,
    name_problem,
    printable,
    submitter_from_key,
)
from .ssh import SshOptions, connect

log = logging.getLogger("benchsync")

CHUNK = 32 * 1024  # READ length every SFTP server must honour (paramiko's MAX_REQUEST_SIZE)
WINDOW = 64  # READs in flight per file: 2 MiB, the SSH channel's receive window
AHEAD_ITEMS = 32  # files opened and read ahead of fetch() at most…
AHEAD_BYTES = 32 * 1024 * 1024  # …holding at most this much data…
AHEAD_ITEM_BYTES = 1024 * 1024  # …each one no larger than this (one READ window)
SEND_ERRORS = (OSError, EOFError, paramiko.SSHException)  # sending on a dead connection


class SftpSource(Source):
    """Regular files in one remote folder (optionally below); symlinks never followed."""

    channel = "scp"

    def __init__(
        self,
        opts: SshOptions,
        root: bytes,
        url: str,
        settle_seconds: float = 60.0,
        after_ingest: AfterIngest = AfterIngest("keep"),
        recursive: bool = False,
        submitter_from_path: bool = False,
    ) -> None:
        self.opts = opts
        self.root = root
        self.url = url
        self.settle_seconds = settle_seconds
        self.after_ingest = after_ingest
        self.recursive = recursive
        self.submitter_from_path = submitter_from_path
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._move_to = self._move_folder()
        self._plan: dict[str, Item] = {}  # small items still to read ahead, in fetch order
        self._ahead: dict[str, _Ahead] = {}  # read ahead, not fetched yet (by key)
        self._closing: list[_Ahead] = []  # dropped, awaiting the handle they must close

    @classmethod
    def from_config(
        cls,
        section: Section,
        spec: str,
        settle: float,
        after: AfterIngest,
        recursive: bool,
        by_path: bool,
    ) -> SftpSource:
        """Build the source from `[scp]`; ConfigError for a bad URL, key or secret file."""
        parts = urlsplit(spec)
        if parts.password is not None:
            raise ConfigError(f"[{section.name}] source: no password in the URL; use password_file")
        if not parts.hostname:
            raise ConfigError(f"[{section.name}] source = {spec!r}: no host in the URL")
        try:
            port = parts.port or 22
        except ValueError:
            raise ConfigError(f"[{section.name}] source = {spec!r}: bad port") from None
        user = unquote(parts.username or "") or section.get("user") or getpass.getuser()
        path = unquote(parts.path or "/")
        root = path[3:] or "." if path.startswith("/~/") or path == "/~" else path
        host = parts.hostname
        netloc = f"{user}@{host}" + (f":{port}" if port != 22 else "")
        url = f"sftp://{netloc}{parts.path or '/'}"
        opts = SshOptions.from_section(section, host, port, user)
        return cls(opts, root.encode(), url, settle, after, recursive, by_path)

    def _move_folder(self) -> bytes | None:
        if self.after_ingest.action != "move" or not self.after_ingest.folder:
            return None
        folder = self.after_ingest.folder.encode()
        return folder if folder.startswith(b"/") else _join(self.root, folder)

    # -- connection -------------------------------------------------------------------
    def open(self) -> None:
        """Connect, start SFTP, and check the folder (and the move folder) are there."""
        self._client = connect(self.opts, self.url)
        with self._guard("cannot start SFTP"):
            self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(self.opts.timeout)
        with self._guard(f"remote folder {printable(self.root)}"):
            if not stat.S_ISDIR(self._sftp.stat(self.root).st_mode or 0):
                raise SourceUnreachable(f"{self.url}: {printable(self.root)} is not a folder")
        if self._move_to is not None:
            self._makedirs(self._move_to)

    def close(self) -> None:
        self._drop_ahead()
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None

    def _guard(self, what: str, whole_source: bool = True) -> _Guard:
        """Errors inside become SourceUnreachable, or ItemError when not `whole_source`."""
        return _Guard(self, what, whole_source)

    def connection_lost(self) -> bool:
        """True when the SSH transport is gone (the error is the source's, not the item's)."""
        t = self._client.get_transport() if self._client is not None else None
        return t is None or not t.is_active()

    # -- listing ----------------------------------------------------------------------
    def list(self) -> Iterator[Item]:
        """One pass over the folder (and subfolders if recursive), lstat-style attributes."""
        stats = {"requests": 0, "entries": 0, "seconds": 0.0}
        with self._guard(f"cannot list {printable(self.root)}"):
            yield from self._walk(self.root, b"", stats)
        log.info(
            "listed %s entries=%d requests=%d seconds=%.2f",
            self.url,
            stats["entries"],
            stats["requests"],
            stats["seconds"],
        )

    def _walk(self, folder: bytes, prefix: bytes, stats: dict[str, float]) -> Iterator[Item]:
        start = time.monotonic()
        entries = listdir_raw(self._sftp, folder, stats)
        stats["seconds"] += time.monotonic() - start
        for name, attrs in entries:
            stats["entries"] += 1
            path = _join(folder, name)
            mode = attrs.st_mode or 0
            if self._move_to is not None and path == self._move_to:
                continue
            if stat.S_ISDIR(mode) and self.recursive:
                yield from self._walk(path, prefix + name + b"/", stats)
                continue
            item = _file_item(path, prefix + name, attrs)
            item.submitter = submitter_from_key(item.key, self.submitter_from_path)
            yield item

    # -- transfer ---------------------------------------------------------------------
    def prefetch(self, items: list[Item]) -> None:
        """Start reading the small ones among `items` ahead (what is left of an earlier
        plan is closed); errors are left for `fetch()` of the item to meet."""
        self._drop_ahead()
        self._plan = {i.key: i for i in items if i.size and i.size <= AHEAD_ITEM_BYTES}
        self._top_up()

    def fetch(self, item: Item) -> Iterator[Payload]:
        yield Payload(item.name, lambda w: self._download(item, w), expected_size=item.size)

    def _download(self, item: Item, writer: Writer) -> None:
        self._plan.pop(item.key, None)
        ahead = self._ahead.pop(item.key, None)
        try:
            with self._guard("read failed", whole_source=False):
                if ahead is None:
                    read_file(self._sftp, item, writer)
                else:
                    ahead.copy_to(writer)
        finally:
            self._top_up()

    def _top_up(self) -> None:
        """Read ahead the next planned items, within AHEAD_ITEMS and AHEAD_BYTES."""
        held = sum(a.item.size or 0 for a in self._ahead.values())
        while self._plan and len(self._ahead) < AHEAD_ITEMS:
            key, item = next(iter(self._plan.items()))
            if held + (item.size or 0) > AHEAD_BYTES:
                return
            del self._plan[key]
            try:
                self._ahead[key] = _Ahead(self._sftp, item)
            except SEND_ERRORS:  # the connection is gone: fetch() will say so, as without this
                self._plan.clear()
                return
            held += item.size or 0

    def _drop_ahead(self) -> None:
        """Forget the plan; close the handles of files read ahead but never fetched."""
        self._plan.clear()
        dropped, self._ahead = [*self._closing, *self._ahead.values()], {}
        for a in dropped:
            try:
                a.close()
            except SEND_ERRORS:
                pass  # the connection is gone, and with it the server's handles
        # paramiko holds reply handlers weakly: keep those whose OPEN is unanswered alive
        self._closing = [a for a in dropped if a.opened is None]

    # -- acknowledgement --------------------------------------------------------------
    def ack(self, item: Item) -> None:
        """Delete or move the file, but only if it is still the version that was filed."""
        if self.after_ingest.action == "keep":
            return
        sftp, path = self._sftp, item.handle
        with self._guard(f"{self.after_ingest.action} failed", whole_source=False):
            try:
                st = sftp.lstat(path)
            except FileNotFoundError:
                return
            if (st.st_size, float(st.st_mtime or 0)) != (item.size, item.mtime):
                raise ItemError("changed after it was filed: left in place, it will be filed again")
            if self.after_ingest.action == "delete":
                sftp.remove(path)
                return
            assert self._move_to is not None
            dest = _join(self._move_to, item.key.encode("utf-8", "surrogateescape"))
            self._makedirs(posixpath.dirname(dest))
            _rename(sftp, path, self._free_name(dest))

    def _free_name(self, path: bytes) -> bytes:
        """`path`, or `path.1`, `path.2`… so that a move never overwrites an earlier file."""
        candidate, n = path, 0
        while True:
            try:
                self._sftp.lstat(candidate)
            except FileNotFoundError:
                return candidate
            n += 1
            candidate = path + b".%d" % n

    def _makedirs(self, folder: bytes) -> None:
        with self._guard(f"cannot create {printable(folder)}"):
            try:
                if stat.S_ISDIR(self._sftp.stat(folder).st_mode or 0):
                    return
            except FileNotFoundError:
                pass
            parent = posixpath.dirname(folder)
            if parent and parent != folder:
                self._makedirs(parent)
            self._sftp.mkdir(folder)


class _Guard:
    """Turn paramiko's errors into ours: a dead connection is the source's, else the item's."""

    def __init__(self, source: SftpSource, what: str, whole_source: bool) -> None:
        self.source, self.what, self.whole_source = source, what, whole_source

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, (ItemError, SourceUnreachable)):
            return False
        url = self.source.url
        lost = isinstance(exc, (paramiko.SSHException, EOFError, TimeoutError))
        if lost or (isinstance(exc, OSError) and self.source.connection_lost()):
            reason = str(exc) or type(exc).__name__
            raise SourceUnreachable(f"{url}: connection lost: {reason}") from None
        if isinstance(exc, paramiko.SFTPError):
            raise SourceUnreachable(f"{url}: {self.what}: protocol error: {exc}") from None
        if not isinstance(exc, OSError):
            return False
        reason = exc.strerror or str(exc) or "refused by the server"
        if self.whole_source:
            raise SourceUnreachable(f"{url}: {self.what}: {reason}") from None
        if isinstance(exc, FileNotFoundError):
            raise ItemError("vanished before it could be read") from None
        raise ItemError(f"{self.what}: {reason}") from None


def _join(folder: bytes, name: bytes) -> bytes:
    return name if folder in (b"", b".") else folder.rstrip(b"/") + b"/" + name


def _file_item(path: bytes, rel: bytes, attrs: SFTPAttributes) -> Item:
    """An item for one remote entry, with the reason it can never be filed, if any."""
    problem = mode_problem(attrs.st_mode or 0) or name_problem(posixpath.basename(rel))
    return Item(
        key=printable(rel),
        name=printable(posixpath.basename(rel)),
        size=attrs.st_size,
        mtime=float(attrs.st_mtime) if attrs.st_mtime is not None else None,
        problem=problem,
        meta={"remote_path": printable(path)},
        handle=path,
    )


def _rename(sftp: paramiko.SFTPClient, old: bytes, new: bytes) -> None:
    """posix-rename@openssh.com (atomic), or plain RENAME where the server lacks it."""
    try:
        sftp.posix_rename(old, new)
    except OSError as e:
        if "not supported" not in str(e).lower() and "unsupported" not in str(e).lower():
            raise
        sftp.rename(old, new)


# -- the pipelined operations (paramiko's own request machinery) -------------------------
# A request sent with `sftp._async_request(obj, ...)` has its reply handed to
# `obj._async_response(t, msg, num)` by whichever `_read_response()` call meets it
# (paramiko's own prefetch hook). Replies arrive in any order and are matched by id.
# paramiko keeps `obj` only by a weak reference: we must hold it until its replies came.


def listdir_raw(
    sftp: paramiko.SFTPClient, folder: bytes, stats: dict[str, float]
) -> list[tuple[bytes, SFTPAttributes]]:
    """Every entry of `folder` as (raw name, attributes), from OPENDIR + READDIR (§6.7)."""
    _t, msg = sftp._request(CMD_OPENDIR, folder)
    handle = msg.get_binary()
    stats["requests"] += 1
    entries = []
    try:
        while True:
            stats["requests"] += 1
            try:
                t, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:
                return entries
            if t != CMD_NAME:
                raise paramiko.SFTPError("expected a NAME reply to READDIR")
            for _ in range(msg.get_int()):
                name = msg.get_string()
                msg.get_string()  # longname, an `ls -l` line for people
                attrs = SFTPAttributes._from_msg(msg)
                if name not in (b".", b".."):
                    entries.append((name, attrs))
    finally:
        sftp._async_request(type(None), CMD_CLOSE, handle)


def read_file(sftp: paramiko.SFTPClient, item: Item, writer: Writer) -> None:
    """Stream the listed `item.size` bytes to `writer`: OPEN, then FSTAT and READs in flight."""
    t, msg = sftp._request(CMD_OPEN, item.handle, SFTP_FLAG_READ, SFTPAttributes())
    if t != CMD_HANDLE:
        raise paramiko.SFTPError("expected a HANDLE reply to OPEN")
    handle = msg.get_binary()
    try:
        _Reader(sftp, handle, item).copy_to(writer)
    finally:
        sftp._async_request(type(None), CMD_CLOSE, handle)  # reply not awaited


class _Reader:
    """An open file's FSTAT and READs in flight (WINDOW at a time); `copy_to` checks the
    FSTAT and writes the data in order."""

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes, item: Item) -> None:
        self.sftp, self.handle, self.item = sftp, handle, item
        self.size = item.size or 0
        self.got: dict[int, tuple[int, paramiko.Message]] = {}  # replies not yet used
        self.pending: dict[int, tuple[int, int]] = {}  # READ id -> (offset, length)
        self.sent = 0
        self.fstat = sftp._async_request(self, CMD_FSTAT, handle)
        self._fill()

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.got[num] = (t, msg)

    def _send(self, offset: int, length: int) -> None:
        num = self.sftp._async_request(self, CMD_READ, self.handle, int64(offset), length)
        self.pending[num] = (offset, length)

    def _fill(self) -> None:
        while len(self.pending) < WINDOW and self.sent < self.size:
            n = min(CHUNK, self.size - self.sent)
            self._send(self.sent, n)
            self.sent += n

    def copy_to(self, writer: Writer) -> None:
        ready: dict[int, bytes] = {}  # offset -> data, until it is the next to write
        written = 0
        checked = False
        while written < self.size or not checked:
            self._fill()
            while not self.got:
                self.sftp._read_response()
            for num, (t, msg) in list(self.got.items()):
                del self.got[num]
                if num == self.fstat:
                    _check_fstat(t, msg, self.item)
                    checked = True
                    continue
                offset, length = self.pending.pop(num)
                data = _data(t, msg, offset)
                ready[offset] = data
                if len(data) < length:  # a short read is legal (§6.4): ask for the rest
                    self._send(offset + len(data), length - len(data))
            while written in ready:
                data = ready.pop(written)
                writer.write(data)
                written += len(data)


class _Ahead:
    """One small file read ahead: OPEN now; its FSTAT and READs the moment the HANDLE
    reply arrives (in whichever `_read_response()` meets it, so never raising there)."""

    def __init__(self, sftp: paramiko.SFTPClient, item: Item) -> None:
        self.sftp, self.item = sftp, item
        self.opened: tuple[int, paramiko.Message] | None = None  # the reply to OPEN
        self.handle: bytes | None = None
        self.reader: _Reader | None = None
        self.error: Exception | None = None  # met while sending the FSTAT and READs
        self.closed = False
        sftp._async_request(self, CMD_OPEN, item.handle, SFTP_FLAG_READ, SFTPAttributes())

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.opened = (t, msg)
        if t != CMD_HANDLE:
            return
        self.handle = msg.get_binary()
        try:
            if self.closed:  # dropped before its handle came: close it now
                self.sftp._async_request(type(None), CMD_CLOSE, self.handle)
            else:
                self.reader = _Reader(self.sftp, self.handle, self.item)
        except SEND_ERRORS as e:
            self.error = e

    def copy_to(self, writer: Writer) -> None:
        """What `read_file` does, from the replies that have arrived or are on their way."""
        try:
            while self.opened is None:
                self.sftp._read_response()
            t, msg = self.opened
            if t == CMD_STATUS:
                self.sftp._convert_status(msg)  # FileNotFoundError etc., as `_request` raises
            if t != CMD_HANDLE:
                raise paramiko.SFTPError("expected a HANDLE reply to OPEN")
            if self.error is not None:
                raise self.error
            assert self.reader is not None
            self.reader.copy_to(writer)
        finally:
            self.close()

    def close(self) -> None:
        """Close the remote handle (reply not awaited); one still to come is closed on arrival."""
        if self.closed:
            return
        self.closed = True
        if self.handle is not None:
            self.sftp._async_request(type(None), CMD_CLOSE, self.handle)


def _check_fstat(t: int, msg: paramiko.Message, item: Item) -> None:
    """The opened file is the listed one: regular (not a symlink swapped in), same size."""
    if t != CMD_ATTRS:
        raise ItemError("unreadable: FSTAT refused")
    attrs = SFTPAttributes._from_msg(msg)
    if not stat.S_ISREG(attrs.st_mode or 0):
        raise ItemRejected("not a regular file when opened")
    if attrs.st_size != item.size:
        raise ItemError(
            f"changed while being read: listed {item.size} bytes, now {attrs.st_size}; "
            "it will be read again"
        )


def _data(t: int, msg: paramiko.Message, offset: int) -> bytes:
    if t == CMD_DATA:
        data = msg.get_string()
        if data:
            return data
        raise ItemError(f"transfer cut: empty reply at offset {offset}")
    if t == CMD_STATUS:
        code, text = msg.get_int(), msg.get_text()
        if code == SFTP_EOF:
            raise ItemError(f"transfer cut: file ended at {offset} bytes, shorter than listed")
        raise ItemError(f"read failed at offset {offset}: {text}")
    raise paramiko.SFTPError(f"unexpected reply {t} to READ")
