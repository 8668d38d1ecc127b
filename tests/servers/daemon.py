"""The part every keeper-run daemon handle shares: pid, log tail, SIGKILL, idempotent stop."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ._proc import Keeper, read_pid, tail, unregister


@dataclass(eq=False, kw_only=True)
class Daemon:
    """Base of the handles on a daemon started by ``start-*.sh`` under a :class:`Keeper`.

    A subclass names its pid and log file (relative to ``dir``) and declares a ``dir`` field
    itself, where its constructor wants it; ``dir`` None (an external server) means nothing here
    to look at, kill or delete. The keeper owns every process of the server, so killing or
    stopping goes through it rather than through signals to a pid.
    """

    pid_file: ClassVar[str]
    log_file: ClassVar[str]
    if TYPE_CHECKING:
        dir: Path | None
    _keeper: Keeper | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int | None:
        """The daemon's (master) pid; None when it is not running or there is no ``dir``."""
        return None if self.dir is None else read_pid(self.dir / self.pid_file)

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the daemon's log, for assertion messages."""
        return "" if self.dir is None else tail(self.dir / self.log_file, lines)

    def kill(self) -> None:
        """SIGKILL the daemon and every process below it: open sessions drop mid-command."""
        if self._keeper is not None:
            self._keeper.kill_all()

    def _shutdown(self) -> None:
        """Hook run before the keeper kills what is left; a plain SIGKILL needs nothing here."""

    def stop(self) -> None:
        """Stop the daemon and delete its directory (idempotent).

        SIGKILL (the keeper's close), not a graceful stop, unless :meth:`_shutdown` says
        otherwise: a graceful one takes seconds and the directory is deleted anyway.
        """
        if self._stopped:
            return
        self._stopped = True
        unregister(self)
        if self._keeper is not None:
            self._shutdown()
            self._keeper.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
