"""The WSGI application (PEP 3333): files POSTed logs through the shared pipeline.

    POST /api/v1/logs          raw body (X-Filename names it) or multipart field(s) `file`
    GET  /api/v1/logs/<md5>    whether and when that content was filed
    GET  /healthz              database and store reachable

Every waitress worker thread keeps its own database connection and `Pipeline`; the
unique md5 in the database decides which of two concurrent uploads of the same content
is new. A receipt's item is `<submitter>:<md5>`, so a client retrying after a lost answer
is told `duplicate` and adds no second receipt; another submitter adds its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..config import Config
from ..db import Database
from ..db.bench import parsed_rows
from ..db.connection import as_iso
from ..db.filing import file_ids
from ..errors import DatabaseUnreachable, ItemError, UnreachableError
from ..jobs import open_database
from ..pipeline import Counts, Filed, Pipeline
from ..runlog import q
from ..sources.base import Item, Writer
from ..store import MD5_RE, Store
from .auth import Tokens, Unauthorized
from .multipart import MultipartError, MultipartReader, boundary_of, parse_options
from .upload import BadRequest, HttpSource, TooLarge, client_name, limited, part_copier

log = logging.getLogger("benchsync")

API = "/api/v1/logs"
FILE_FIELD = "file"
RETRY_AFTER = "2"  # seconds a client should wait after a 503
JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


@dataclass
class Settings:
    """The `[http]` options the application needs."""

    max_upload_bytes: int
    max_file_bytes: int
    tokens: Tokens
    run_id: int | None = None


@dataclass
class Reply:
    """One response: status, JSON body, and what the request log line reports."""

    status: int
    body: dict[str, Any]
    md5: str | None = None
    submitter: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Receiver:
    """The WSGI callable; one instance serves every waitress thread."""

    def __init__(self, config: Config, store: Store, settings: Settings) -> None:
        self.config = config
        self.store = store
        self.settings = settings
        self.counts = Counts()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._generation = 0  # bumped when the database fails: every thread reconnects

    # -- per-thread database ----------------------------------------------------------
    def _pipeline(self) -> Pipeline:
        """This thread's pipeline and connection, opened on first use or after a failure."""
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is not None and self._local.generation != self._generation:
            self._drop_connection(everywhere=False)  # another thread saw the database fail
            pipeline = None
        if pipeline is None:
            self._local.generation = self._generation
            db = open_database(self.config, migrate=False)
            pipeline = Pipeline(db, self.store, self._file_limit(), self.settings.run_id)
            self._local.pipeline = pipeline
        return pipeline

    def _drop_connection(self, everywhere: bool = True) -> None:
        """Forget this thread's connection after an error, so the next request reconnects.

        `everywhere`: the other threads' connections are presumed dead too (a database
        restart breaks them all), so they reconnect before their next request rather
        than each answering one more 503.
        """
        pipeline = getattr(self._local, "pipeline", None)
        self._local.pipeline = None
        if everywhere:
            with self._lock:
                self._generation += 1
        if pipeline is not None:
            pipeline.db.close()

    def _db(self) -> Database:
        return self._pipeline().db

    def _file_limit(self) -> int:
        return min(self.settings.max_file_bytes, self.settings.max_upload_bytes)

    def count(self, **add: int) -> None:
        with self._lock:
            for k, v in add.items():
                setattr(self.counts, k, getattr(self.counts, k) + v)

    # -- WSGI -------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        start = time.monotonic()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        reply = self._reply(environ, method, path)
        body = json.dumps(reply.body, ensure_ascii=False).encode("utf-8") + b"\n"
        headers = [*JSON, ("Content-Length", str(len(body))), *reply.headers]
        start_response(f"{reply.status} {_REASONS.get(reply.status, 'Error')}", headers)
        log_request(
            method,
            path,
            reply.status,
            reply.md5,
            reply.submitter,
            _body_bytes(environ),
            start,
            environ.get("REMOTE_ADDR"),
        )
        return [body]

    def _reply(self, environ: dict[str, Any], method: str, path: str) -> Reply:
        try:
            if path == "/healthz":
                return self._healthz() if method in ("GET", "HEAD") else _not_allowed("GET")
            if path.rstrip("/") == API:
                return self._post(environ) if method == "POST" else _not_allowed("POST")
            if path.startswith(API + "/"):
                return self._lookup(environ, path) if method == "GET" else _not_allowed("GET")
            return Reply(404, {"error": "not found: use POST " + API})
        except Unauthorized as e:
            return Reply(401, {"error": str(e)}, headers=[("WWW-Authenticate", "Bearer")])
        except BadRequest as e:
            return Reply(400, {"error": str(e)})
        except UnreachableError as e:
            self._drop_connection(everywhere=isinstance(e, DatabaseUnreachable))
            log.error("unavailable: %s", e)
            body = {"error": f"unavailable, retry later: {e}"}
            return Reply(503, body, headers=[("Retry-After", RETRY_AFTER)])
        except Exception as e:  # noqa: BLE001 - a bug: traceback to the run log, 500 to the client
            self._drop_connection(everywhere=False)
            _log_internal_error(e)
            return Reply(500, {"error": "internal error (see the server's run log)"})

    # -- endpoints --------------------------------------------------------------------
    def _healthz(self) -> Reply:
        """Cheap checks that a POST could be filed now: the database answers, the store writes."""
        file_ids(self._db(), ["0" * 32])
        self.store.open()
        return Reply(200, {"status": "ok"})

    def _lookup(self, environ: dict[str, Any], path: str) -> Reply:
        submitter = self.settings.tokens.submitter(environ.get("HTTP_AUTHORIZATION"))
        md5 = path[len(API) + 1 :].strip("/").lower()
        if not MD5_RE.match(md5):
            raise BadRequest("not an md5: use GET /api/v1/logs/<32 hex digits>")
        rows = parsed_rows(self._db(), md5)
        if rows is None:
            return Reply(404, {"md5": md5, "filed": False}, md5, submitter)
        file_id, _, size, _, first_seen, parse_status, _ = rows["file"]
        receipts = rows["receipts"]
        body = {
            "md5": md5,
            "filed": True,
            "file_id": file_id,
            "size": size,
            "first_seen_at": as_iso(first_seen),
            "parse_status": parse_status,
            "receipts": len(receipts),
            "channels": sorted({r[0] for r in receipts}),
        }
        return Reply(200, body, md5, submitter)

    def _post(self, environ: dict[str, Any]) -> Reply:
        submitter = self.settings.tokens.submitter(environ.get("HTTP_AUTHORIZATION"))
        length = _content_length(environ)
        if length is not None and length > self.settings.max_upload_bytes:
            return self._refused(413, f"too large: over {self.settings.max_upload_bytes} bytes")
        stream = environ["wsgi.input"]
        kind, _ = parse_options(environ.get("CONTENT_TYPE", ""))
        meta = {"client": environ.get("REMOTE_ADDR")}
        try:
            if kind == "multipart/form-data":
                reply = self._post_multipart(environ, stream, length, submitter, meta)
            else:
                if length == 0:
                    raise BadRequest("empty body: send the log as the request body")
                name = client_name(environ.get("HTTP_X_FILENAME"))
                copy = limited(stream, length, self._file_limit())
                filed = self._file([(name, copy)], submitter, meta)
                reply = _filed_reply(filed, submitter)
        except TooLarge as e:
            return self._refused(413, e.reason, submitter)
        except (ItemError, MultipartError) as e:
            return self._refused(400, getattr(e, "reason", None) or str(e), submitter)
        except BadRequest as e:
            return self._refused(400, str(e), submitter)
        return reply

    def _refused(self, status: int, reason: str, submitter: str | None = None) -> Reply:
        self.count(failed=1)
        log.warning("refused status=%d submitter=%s reason=%s", status, q(submitter), q(reason))
        return Reply(status, {"error": reason}, None, submitter)

    def _post_multipart(
        self,
        environ: dict[str, Any],
        stream: BinaryIO,
        length: int | None,
        submitter: str | None,
        meta: dict[str, Any],
    ) -> Reply:
        """File each `file` field as its own item, in order, as the body streams in."""
        reader = MultipartReader(stream, boundary_of(environ.get("CONTENT_TYPE", "")), length)
        filed: list[Filed] = []
        try:
            for part in reader.parts():
                if part.name != FILE_FIELD:
                    continue
                name = client_name(part.filename)
                copy = part_copier(part.write_to, self._file_limit())
                filed += self._file([(name, copy)], submitter, meta)
        except (BadRequest, ItemError, MultipartError) as e:
            if not filed:
                raise
            status = 413 if isinstance(e, TooLarge) else 400
            reason = getattr(e, "reason", None) or str(e)
            reply = self._refused(status, reason, submitter)
            reply.body["files"] = [_filed_body(f) for f in filed]
            return reply
        if not filed:
            raise BadRequest(f"no `{FILE_FIELD}` field in the form: curl -F {FILE_FIELD}=@run.log")
        return _filed_reply(filed, submitter, multipart=True)

    def _file(
        self,
        payloads: list[tuple[str | None, Callable[[Writer], None]]],
        submitter: str | None,
        meta: dict[str, Any],
    ) -> list[Filed]:
        """File one item through the pipeline; the database decides new or duplicate."""
        item = Item(key="", name=payloads[0][0] or "", submitter=submitter, meta=dict(meta))
        filed = self._pipeline().file_item(HttpSource(payloads), item)
        for f in filed:
            self.count(seen=1, new=int(f.new), dup=int(not f.new))
        return filed


def _log_internal_error(e: Exception) -> None:
    """The traceback goes to the run log file only; stderr gets one line."""
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "internal error", (), (type(e), e, e.__traceback__)
    )
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    log.error("internal error: %s: %s (traceback in the run log)", type(e).__name__, e)


def _filed_body(f: Filed) -> dict[str, Any]:
    return {
        "md5": f.md5,
        "status": "new" if f.new else "duplicate",
        "file_id": f.file_id,
        "parse_status": f.parse_status,
        "size": f.size,
        "name": f.name,
    }


def _filed_reply(filed: list[Filed], submitter: str | None, multipart: bool = False) -> Reply:
    """201 when any content was new, else 200; a raw body answers with its one file."""
    new = any(f.new for f in filed)
    status = 201 if new else 200
    if not multipart:
        return Reply(status, _filed_body(filed[0]), filed[0].md5, submitter)
    body = {"status": "new" if new else "duplicate", "files": [_filed_body(f) for f in filed]}
    return Reply(status, body, ",".join(f.md5 for f in filed), submitter)


def _not_allowed(allowed: str) -> Reply:
    return Reply(405, {"error": f"method not allowed: use {allowed}"}, headers=[("Allow", allowed)])


def _content_length(environ: dict[str, Any]) -> int | None:
    value = environ.get("CONTENT_LENGTH") or ""
    try:
        return int(value) if value.strip() else None
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None


def _body_bytes(environ: dict[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def log_request(
    method: str,
    path: str,
    status: int,
    md5: str | None,
    submitter: str | None,
    size: int,
    start: float,
    client: str | None,
) -> None:
    """One run-log line a request: method, path, status, md5, submitter, bytes, ms."""
    log.info(
        "request method=%s path=%s status=%d md5=%s submitter=%s bytes=%d ms=%.1f client=%s",
        q(method),
        q(path),
        status,
        md5 or "-",
        q(submitter or "-"),
        size,
        (time.monotonic() - start) * 1000,
        q(client or "-"),
    )


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
