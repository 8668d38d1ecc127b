"""Parse new contents on the other cores while the pipeline goes on fetching.

Parsing a 20 KB run log costs about as much CPU as receiving, hashing, compressing and
storing it, so with parsing inline a run uses one core for both. A small process pool
(forked, so it starts in milliseconds with the parser already imported) takes the
parsing: the pipeline submits each payload as soon as it has streamed in, and collects
the result when it commits the batch. Any trouble with the pool falls back to parsing
inline; a parser bug is already contained by `analyze`.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .analyze import analyze
from .workers import worker_pool

log = logging.getLogger("benchsync")


def default_workers() -> int:
    """One worker per core but the pipeline's own, at most four."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class Parser:
    """Parses payloads by md5, each at most once per run."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: dict[str, Future | Any] = {}

    def submit(self, md5: str, raw: bytes | None, name: str | None) -> None:
        """Start parsing a payload (once per md5); small or pool-less ones wait for result()."""
        if md5 in self._jobs:
            return
        pool = self._get_pool() if raw is not None else None
        if pool is None:
            self._jobs[md5] = (raw, name)
            return
        try:
            self._jobs[md5] = pool.submit(analyze, raw, name)
        except (BrokenProcessPool, RuntimeError, OSError):
            self._jobs[md5] = (raw, name)

    def result(self, md5: str) -> Any:
        """The parse result of a submitted payload (parsed here if the pool could not)."""
        job = self._jobs.pop(md5)
        if isinstance(job, Future):
            try:
                return job.result()
            except (BrokenProcessPool, OSError) as e:
                log.warning("parser worker failed (%s): parsing in the main process", e)
                self._close_pool()
                raise _Retry from None
        return analyze(*job)

    def result_or_inline(self, md5: str, raw: bytes | None, name: str | None) -> Any:
        """result(), re-parsing here when the worker died under it."""
        try:
            return self.result(md5)
        except _Retry:
            return analyze(raw, name)

    def discard(self, md5: str) -> None:
        """Forget a payload that turned out to be a duplicate."""
        job = self._jobs.pop(md5, None)
        if isinstance(job, Future):
            job.cancel()

    def _get_pool(self) -> ProcessPoolExecutor | None:
        if self.workers <= 0:
            return None
        if self._pool is None:
            try:
                self._pool = worker_pool(self.workers)
            except (ValueError, OSError) as e:
                log.warning("no parser workers (%s): parsing in the main process", e)
                self.workers = 0
                return None
        return self._pool

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.workers = 0

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _Retry(Exception):
    """The worker died: parse the payload in this process instead."""
