"""Keeper process: runs a server's start script and owns every process it leaves behind.

Why: daemons (postgres, dovecot, sshd, vsftpd) detach from the script that starts them and get
re-parented to PID 1, which reaps zombies only every few seconds here: a killed postmaster's pid
then still "exists" (restart refuses) and ``pgrep`` lists zombies after the session. The keeper is
a child subreaper (PR_SET_CHILD_SUBREAPER), so all those processes stay below it; it reaps them
at once, can SIGKILL the whole tree on request, and does so by itself when its stdin closes,
i.e. also when the test process dies without cleaning up.

Protocol (one JSON object per line): ``{"run": [argv], "env": {...}, "timeout": s}`` ->
``{"rc": n, "stdout": "...", "stderr": "..."}``; ``{"kill": true}`` -> ``{"killed": [pids]}``;
``{"own": path}`` -> ``{}`` (delete that directory on exit); EOF or ``{"exit": true}`` -> kill
what is left, reap, delete owned directories, exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
OWNED: list[str] = []


def _descendants() -> list[int]:
    """Every process below this one (orphans re-parent here, so this is the whole server)."""
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(entry.path, "stat").read_text()
                parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], {os.getpid()}
    while frontier:
        kids = {p for p, pp in parent_of.items() if pp in frontier}
        found.extend(kids)
        frontier = kids
    return found


def _reap() -> None:
    """Collect every exited child without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_all(timeout: float = 5.0) -> list[int]:
    """SIGKILL every descendant and reap them; return the pids that were signalled."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _descendants()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
        time.sleep(0.01)
        _reap()
    _reap()
    return killed


def _run(cmd: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, **cmd.get("env", {})}
    try:
        res = subprocess.run(
            cmd["run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=cmd.get("timeout", 60),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"rc": -1, "stdout": "", "stderr": f"timed out after {cmd.get('timeout', 60)}s"}
    except OSError as exc:
        return {"rc": -1, "stdout": "", "stderr": str(exc)}
    return {"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Serve commands until stdin closes, reaping children all the time; then clean up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        _reply({"rc": -1, "stdout": "", "stderr": "prctl(PR_SET_CHILD_SUBREAPER) failed"})
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to pytest, which tells us to stop

    def _on_term(signum: int, frame: Any) -> None:
        _finish()
        os._exit(0)

    signal.signal(signal.SIGTERM, _on_term)
    buf = b""
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        _reap()
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd = json.loads(line)
            if "run" in cmd:
                _reply(_run(cmd))
            elif cmd.get("kill"):
                _reply({"killed": _kill_all()})
            elif "own" in cmd:
                OWNED.append(cmd["own"])
                _reply({})
            elif cmd.get("exit"):
                _finish()
                return
    _finish()


def _finish() -> None:
    """Kill every remaining server process, then delete the directories we were given."""
    _kill_all()
    for path in OWNED:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
