"""Forked worker processes that never outlive the job that started them.

A forked worker inherits every open file of its parent, the job's flock included. If
the job is killed and a worker lives on, the lock stays held and every later cron run
of that job logs "skipped: locked" for ever; so each worker asks the kernel to kill it
when its parent dies (prctl PR_SET_PDEATHSIG), and checks it did not already.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # prctl(2)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` forked processes (started in milliseconds, code already loaded)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when `parent` dies (call first thing in a child)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
