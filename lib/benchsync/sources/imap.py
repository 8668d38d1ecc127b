"""A mailbox as a source: one item per message, its payloads are the logs inside it.

Thin protocol layer over imapclient (RFC 3501 IMAP4rev1); what a message holds is
`benchsync.mail`'s job. Messages are read with `UID FETCH ... BODY.PEEK[]` (RFC 3501
6.4.5: PEEK leaves `\\Seen` alone), many per command. The source remembers per
(server, user, folder) the UIDVALIDITY and a watermark: the highest UID below which
every message was filed or rejected for good (RFC 3501 2.3.1.1: UIDs only grow while
UIDVALIDITY stays), so a poll asks the server only for UIDs above it.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

from imapclient import DELETED, SEEN, IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from .. import mail
from ..config import Section
from ..errors import BenchsyncError, ConfigError, ItemError, SourceUnreachable
from ..runlog import q
from .base import AfterIngest, Item, Payload, Source, Writer

log = logging.getLogger("benchsync")

WATERMARK = "watermark"  # state key: "UIDVALIDITY:UID"
CHUNK = 1024 * 1024
SIZE_CHUNK = 1000  # UIDs per UID FETCH (RFC822.SIZE) while listing
DONE = ("filed", "rejected")  # outcomes that let the watermark pass a message


@dataclass(frozen=True)
class ImapSettings:
    """The `[imap]` section, checked."""

    host: str
    port: int
    ssl: bool
    starttls: bool
    user: str
    password: str
    folder: str = "INBOX"
    tls_verify: bool = True
    tls_ca: Path | None = None
    timeout: float = 60.0
    after_ingest: AfterIngest = AfterIngest("keep")
    no_log_folder: str | None = None
    limits: mail.Limits = mail.Limits()
    fetch_batch: int = 100
    fetch_batch_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_section(cls, s: Section) -> ImapSettings:
        """Read and check the keys; the password comes from a 0600 `password_file`."""
        use_ssl = s.get_bool("ssl", True)
        password = s.get_secret("password_file")
        if password is None:
            raise ConfigError("[imap] password_file is not set")
        defaults = mail.Limits()
        return cls(
            host=s.require("host"),
            port=s.get_int("port", 993 if use_ssl else 143),
            ssl=use_ssl,
            starttls=s.get_bool("starttls", not use_ssl) and not use_ssl,
            user=s.require("user"),
            password=password,
            folder=s.get("folder") or "INBOX",
            tls_verify=s.get_bool("tls_verify", True),
            tls_ca=s.get_path("tls_ca"),
            timeout=s.get_float("timeout", 60.0),
            after_ingest=AfterIngest.parse(s.get("after_ingest"), ("keep", "seen", "move")),
            no_log_folder=s.get("no_log_folder") or None,
            limits=mail.Limits(
                max_attachment_bytes=s.get_size("max_attachment_bytes", "64 MiB"),
                max_unpacked_bytes=s.get_size("max_unpacked_bytes", "256 MiB"),
                max_archive_members=s.get_int("max_archive_members", defaults.max_archive_members),
            ),
            fetch_batch=max(1, s.get_int("fetch_batch", 100)),
            fetch_batch_bytes=s.get_size("fetch_batch_bytes", "16 MiB"),
        )


class Watermark:
    """The highest UID below which every listed message is done (filed or rejected)."""

    def __init__(self, uid: int = 0) -> None:
        self.uid = uid
        self._order: list[int] = []
        self._next = 0
        self._done: set[int] = set()

    def listed(self, uids: list[int]) -> None:
        self._order = sorted(uids)
        self._next = 0

    def done(self, uid: int) -> bool:
        """Mark `uid` done; return True when the watermark moved."""
        self._done.add(uid)
        moved = False
        while self._next < len(self._order) and self._order[self._next] in self._done:
            self.uid = max(self.uid, self._order[self._next])
            self._next += 1
            moved = True
        return moved


class ImapSource(Source):
    """One folder of one IMAP mailbox (contract in `sources.base`)."""

    channel = "imap"
    settle_seconds = 0.0  # a delivered message is complete (RFC 3501 2.3.1.1)

    def __init__(self, settings: ImapSettings) -> None:
        self.s = settings
        self.after_ingest = settings.after_ingest
        user, folder = quote(settings.user, safe=""), quote(settings.folder, safe="/.")
        self.url = f"imap://{user}@{settings.host}/{folder}"
        self.where = f"{settings.host}:{settings.port}"
        self._client: IMAPClient | None = None
        self.uidvalidity = 0
        self._uidnext: int | None = None
        self._wm = Watermark()
        self._saved = ""
        self._sizes: dict[int, int] = {}
        self._order: list[int] = []
        self._pos: dict[int, int] = {}
        self._cache: dict[int, bytes] = {}
        self._told: set[int] = set()
        self._nothing: set[int] = set()
        self._caps: set[str] = set()
        self._warned_no_expunge = False

    @classmethod
    def from_config(cls, section: Section) -> ImapSource:
        """The `[imap]` source (password read now, so a bad secrets file is exit 2)."""
        return cls(ImapSettings.from_section(section))

    # -- connection -----------------------------------------------------------------------
    def open(self) -> None:
        """Connect (IMAPS, or STARTTLS per RFC 3501 6.2.1), log in, select the folder."""
        s = self.s
        ctx = self._tls_context()
        try:
            client = IMAPClient(s.host, port=s.port, ssl=s.ssl, ssl_context=ctx, timeout=s.timeout)
        except (OSError, imaplib.IMAP4.error) as e:
            raise SourceUnreachable(
                f"cannot connect to IMAP server {self.where}: {_why(e)}"
            ) from None
        self._client = client
        try:
            self._login(client, ctx)
            self._select()
            for folder in sorted({self.s.no_log_folder, self.after_ingest.folder} - {None}):
                self._ensure_folder(folder)
        except BaseException:
            self.close()
            raise

    def _login(self, client: IMAPClient, ctx: ssl.SSLContext) -> None:
        """STARTTLS when asked, then LOGIN (RFC 3501 6.2.3); the password is never logged."""
        s = self.s
        with self._talking("login", lambda why: SourceUnreachable(f"{self.where}: {why}")):
            if s.starttls:
                client.starttls(ctx)
            elif not s.ssl:
                log.warning("imap %s: plain text, no TLS (ssl = starttls = false)", self.where)
            try:
                client.login(s.user, s.password)
            except LoginError:
                raise SourceUnreachable(
                    f"IMAP login as {s.user} refused by {self.where}: check user and password_file"
                ) from None

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.s.tls_ca) if self.s.tls_ca else None)
        if not self.s.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            log.warning(
                "imap %s: TLS certificate verification is off (tls_verify = false)", self.where
            )
        return ctx

    def _select(self) -> None:
        """SELECT (RFC 3501 6.3.1), read-write: flags and moves need it; PEEK keeps \\Seen."""
        assert self._client is not None
        what = f"[imap] folder = {self.s.folder!r} cannot be selected on {self.where}"
        with self._talking("SELECT", lambda why: ConfigError(f"{what}: {why}")):
            info = self._client.select_folder(self.s.folder)
            caps = self._client.capabilities()
        self._caps = {c.decode("ascii", "replace").upper() for c in caps}
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        self._uidnext = int(info[b"UIDNEXT"]) if b"UIDNEXT" in info else None

    def _ensure_folder(self, folder: str) -> None:
        assert self._client is not None
        what = f"[imap] cannot create folder {folder!r} on {self.where}"
        with self._talking("CREATE", lambda why: ConfigError(f"{what}: {why}")):
            if self._client.folder_exists(folder):
                return
            self._client.create_folder(folder)
        log.info("imap created folder %s", q(folder))

    @contextmanager
    def _talking(
        self, what: str, refused: Callable[[str], BenchsyncError] | None = None
    ) -> Iterator[None]:
        """Map imaplib's errors: a dropped connection or timeout is the whole source gone
        (exit 3), never one item; a NO/BAD reply becomes `refused(prefix: reply)`."""
        try:
            yield
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:
            self._client = None
            raise SourceUnreachable(
                f"IMAP server {self.where} lost during {what}: {_why(e)}"
            ) from None
        except IMAPClientError as e:
            if refused is None:
                raise
            raise refused(_why(e)) from None

    def close(self) -> None:
        """Save the watermark, then log out; never raises."""
        self._save_watermark()
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - a dead connection is fine at this point
                log.debug("imap logout failed", exc_info=False)

    # -- watermark --------------------------------------------------------------------------
    def _load_watermark(self) -> int:
        text = self.state.get(WATERMARK) if self.state is not None else None
        if not text:
            return 0
        validity, _, uid = text.partition(":")
        if validity != str(self.uidvalidity):
            log.warning(
                "imap %s folder %s: UIDVALIDITY changed from %s to %s: rescanning the folder"
                " (content filed before is recorded as duplicates, not filed twice)",
                self.where,
                q(self.s.folder),
                validity,
                self.uidvalidity,
            )
            return 0
        return int(uid)

    def _save_watermark(self) -> None:
        text = f"{self.uidvalidity}:{self._wm.uid}"
        if self.state is None or text == self._saved or not self.uidvalidity:
            return
        try:
            self.state.set(WATERMARK, text)
            self._saved = text
        except Exception as e:  # noqa: BLE001 - the next run rescans from the old watermark
            log.warning("imap could not save watermark %s: %s", text, e)

    # -- the contract -----------------------------------------------------------------------
    def list(self) -> Iterator[Item]:
        """Messages above the watermark: one UID SEARCH, then their sizes (RFC 3501 6.4.4)."""
        assert self._client is not None
        mark = self._load_watermark()
        self._wm = Watermark(mark)
        self._saved = f"{self.uidvalidity}:{mark}"
        if self._uidnext is not None and self._uidnext <= mark + 1:
            return  # nothing arrived since the last poll: no SEARCH needed
        with self._talking("UID SEARCH"):
            uids = sorted(u for u in self._client.search(["UID", f"{mark + 1}:*"]) if u > mark)
            for i in range(0, len(uids), SIZE_CHUNK):
                part = uids[i : i + SIZE_CHUNK]
                for uid, data in self._client.fetch(part, ["RFC822.SIZE"]).items():
                    if b"RFC822.SIZE" in data:
                        self._sizes[uid] = int(data[b"RFC822.SIZE"])
        self._order = [u for u in uids if u in self._sizes]
        self._pos = {u: i for i, u in enumerate(self._order)}
        self._wm.listed(self._order)
        for uid in self._order:
            yield Item(
                key=f"{self.uidvalidity}:{uid}",
                name=f"UID {uid}",
                size=self._sizes[uid],
                meta={"uid": uid, "uidvalidity": self.uidvalidity},
                handle=uid,
            )

    def fetch(self, item: Item) -> Iterator[Payload]:
        """The logs in one message; the message is fetched with the next few in one command."""
        uid = item.handle
        raw = self._message(uid)
        found = mail.extract(raw, self.s.limits)
        item.submitter = found.submitter
        item.meta = {**item.meta, **found.meta}
        for note in found.notes:
            log.debug("imap item=%s %s", q(item.key), note)
        if not found.files:
            self._nothing.add(uid)
            log.info("no log in item=%s subject=%s", q(item.key), q(found.meta.get("subject", "")))
        for f in found.files:
            if "attachment_name" in f.meta:
                log.info(
                    "imap item=%s attachment name %s filed as %s",
                    q(item.key),
                    q(f.meta["attachment_name"]),
                    q(f.name),
                )
            yield Payload(f.name, partial(_write_all, f.data), meta=f.meta)

    def _message(self, uid: int) -> bytes:
        """The raw message, from the batch already fetched or a new UID FETCH batch."""
        if uid not in self._cache:
            self._cache.clear()  # batch-mates the pipeline skipped: memory stays bounded
            self._save_watermark()
            self._fetch_batch(self._batch_from(uid))
        raw = self._cache.pop(uid, None)
        if raw is None:
            raise ItemError("message vanished from the folder (expunged by another client?)")
        return raw

    def _batch_from(self, uid: int) -> list[int]:
        """`uid` and the next listed UIDs, up to fetch_batch messages and fetch_batch_bytes."""
        batch, total = [uid], self._sizes.get(uid, 0)
        for other in self._order[self._pos.get(uid, len(self._order)) + 1 :]:
            if len(batch) >= self.s.fetch_batch:
                break
            if other in self._told:
                continue
            size = self._sizes.get(other, 0)
            if total + size > self.s.fetch_batch_bytes:
                break
            batch.append(other)
            total += size
        return batch

    def _fetch_batch(self, uids: list[int]) -> None:
        """One UID FETCH of BODY.PEEK[] for all of `uids` (a list: imapclient 4.1 wants one)."""
        if self._client is None:
            raise SourceUnreachable(f"IMAP server {self.where}: no connection")
        with self._talking("UID FETCH", lambda why: ItemError(f"server refused UID FETCH: {why}")):
            data = self._client.fetch(uids, ["BODY.PEEK[]"])
        for uid, parts in data.items():
            body = parts.get(b"BODY[]")
            if uid in uids and isinstance(body, bytes):
                self._cache[uid] = body

    def ack(self, item: Item) -> None:
        """Flag `\\Seen` or move the message, once all its files are committed."""
        uid = item.handle
        action, folder = self.after_ingest.action, self.after_ingest.folder
        if uid in self._nothing and self.s.no_log_folder:
            action, folder = "move", self.s.no_log_folder
        if action == "seen":
            self._store_flag(uid, SEEN)
        elif action == "move" and folder:
            self._move(uid, folder)
        self._mark_done(uid)

    def outcome(self, item: Item, status: str) -> None:
        """Move the watermark past messages filed (and acknowledged) or rejected for good."""
        uid = item.handle
        self._told.add(uid)
        if status == "filed" and uid in self._nothing and self.s.no_log_folder:
            self._no_log_move_on_keep(item)
        if status in DONE:
            self._mark_done(uid)

    def _mark_done(self, uid: int) -> None:
        self._wm.done(uid)  # saved before the next UID FETCH and on close(): one write a batch

    def _no_log_move_on_keep(self, item: Item) -> None:
        """after_ingest = keep: the pipeline does not call ack, so move no-log mail here."""
        try:
            self._move(item.handle, self.s.no_log_folder or "")
        except ItemError as e:
            log.warning("imap item=%s not moved to no_log_folder: %s", q(item.key), q(e.reason))

    def _store_flag(self, uid: int, flag: bytes) -> None:
        """UID STORE +FLAGS.SILENT (RFC 3501 6.4.6)."""
        if self._client is None:
            raise SourceUnreachable(f"IMAP server {self.where}: no connection")
        with self._talking("UID STORE", lambda why: ItemError(f"cannot flag {flag!r}: {why}")):
            self._client.add_flags([uid], [flag], silent=True)

    def _move(self, uid: int, folder: str) -> None:
        """UID MOVE (RFC 6851), else UID COPY + \\Deleted + UID EXPUNGE of this UID (RFC 4315)."""
        if self._client is None:
            raise SourceUnreachable(f"IMAP server {self.where}: no connection")
        client = self._client
        with self._talking("UID MOVE", lambda why: ItemError(f"cannot move to {folder!r}: {why}")):
            if "MOVE" in self._caps:
                client.move([uid], folder)
                return
            client.copy([uid], folder)
            client.add_flags([uid], [DELETED], silent=True)
            if "UIDPLUS" in self._caps:
                client.uid_expunge([uid])  # only this UID: never another's \Deleted mail
            elif not self._warned_no_expunge:
                self._warned_no_expunge = True
                log.warning(
                    "imap %s has neither MOVE nor UIDPLUS: moved messages are copied and"
                    " flagged \\Deleted, and left for a mail client to expunge",
                    self.where,
                )


def _write_all(data: bytes, writer: Writer) -> None:
    """Hand the payload to the store in 1 MiB chunks."""
    view = memoryview(data)
    for i in range(0, len(view), CHUNK):
        writer.write(bytes(view[i : i + CHUNK]))


def _why(e: BaseException) -> str:
    """An exception as one readable line (imaplib puts server replies in bytes reprs)."""
    text = str(e) or type(e).__name__
    if text.startswith(("b'", 'b"')) and text[-1:] in "'\"":
        text = text[2:-1]
    return text.replace("\r", " ").replace("\n", " ").strip()
