"""Process plumbing shared by the server handles: start scripts under a keeper, stop at exit."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0


class ServerUnavailable(Exception):
    """A test server could not be started: its binary is missing or it failed to come up."""


class Stoppable(Protocol):
    def stop(self) -> None: ...


_LIVE: list[Stoppable] = []
_LIVE_LOCK = threading.Lock()


def register(handle: Stoppable) -> None:
    """Remember a started server so that :func:`stop_all` (run at exit) can stop it."""
    with _LIVE_LOCK:
        _LIVE.append(handle)


def unregister(handle: Stoppable) -> None:
    """Forget a server that was stopped explicitly."""
    with _LIVE_LOCK, contextlib.suppress(ValueError):
        _LIVE.remove(handle)


@atexit.register
def stop_all() -> None:
    """Stop every server still running, newest first, so an aborted session leaks no daemons."""
    while True:
        with _LIVE_LOCK:
            if not _LIVE:
                return
            handle = _LIVE.pop()
        with contextlib.suppress(Exception):
            handle.stop()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (servers bind it right after)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = LOOPBACK) -> bool:
    """Poll until something accepts TCP connections on ``host:port``; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


def tail(path: Path, lines: int = 20) -> str:
    """Last lines of a log file, for error messages; empty when it does not exist."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def alive(pid: int | None) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int | None, timeout: float) -> bool:
    """Wait until ``pid`` has exited; False on timeout."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_pid(path: Path) -> int | None:
    """The pid in a daemon's pid file if that process is running, else None."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def require_binary(path: str, package: str) -> None:
    """Raise :class:`ServerUnavailable` naming the apt package when ``path`` is missing."""
    if not os.access(path, os.X_OK):
        raise ServerUnavailable(f"{path} not found: apt-get install {package}")


def as_root() -> bool:
    return os.geteuid() == 0


class Keeper:
    """Handle on a ``keeper.py`` process, which owns (and reaps) every process of one server.

    ``run()`` executes a command below the keeper (start scripts, ``pg_ctl start``), so the
    daemons it leaves behind are the keeper's descendants; ``kill_all()`` SIGKILLs them all;
    ``close()`` ends the keeper after it killed whatever is left. If the test process dies, the
    keeper sees its stdin close and cleans up by itself.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "keeper.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()

    def _call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.proc.poll() is not None:
                raise ServerUnavailable(f"keeper exited (rc {self.proc.returncode})")
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise ServerUnavailable("keeper died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = START_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` under the keeper and return its result (output captured as text)."""
        r = self._call({"run": argv, "env": env or {}, "timeout": timeout})
        return subprocess.CompletedProcess(argv, r["rc"], r["stdout"], r["stderr"])

    def own(self, path: str | os.PathLike[str]) -> None:
        """Have the keeper delete ``path`` when it exits, even if the test process died."""
        self._call({"own": str(path)})

    def kill_all(self) -> None:
        """SIGKILL every process below the keeper (the keeper reaps them before replying)."""
        self._call({"kill": True})

    def close(self) -> None:
        """Kill what is left of the server, let the keeper exit, reap it (idempotent)."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_script(
    name: str, dir_key: str, env: dict[str, str] | None = None
) -> tuple[Keeper, dict[str, str]]:
    """Run ``start-<name>.sh`` under a new keeper and parse its KEY=VALUE output.

    The keeper deletes the server's directory (``info[dir_key]``) when it exits.

    A failure becomes :class:`ServerUnavailable` with the script's stderr (which carries the
    server's log tail). One retry when the port was taken between picking and binding it.
    """
    script = HERE / f"start-{name}.sh"
    for attempt in range(2):
        keeper = Keeper()
        try:
            res = keeper.run(["bash", str(script)], env)
        except BaseException:
            keeper.close()
            raise
        if res.returncode == 0:
            info = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
            keeper.own(info[dir_key])
            return keeper, info
        keeper.close()
        if attempt == 0 and "in use" in res.stderr:
            continue
        break
    raise ServerUnavailable(f"{script.name} failed (exit {res.returncode}):\n{res.stderr.strip()}")
