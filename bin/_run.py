"""Shared start-up of the bin/ scripts: run a `benchsync` subcommand from this checkout.

Cron calls `bin/ftp_sync` by absolute path without installing anything: this puts
`lib/` on the import path and, when the checkout has a `.venv` (made by `make demo` /
`make test`), re-executes with that interpreter so the dependencies are found.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
VENV = os.path.join(ROOT, ".venv")


def main(subcommand: str | None) -> None:
    """Run `benchsync <subcommand> <args…>` (or the script's own module for None)."""
    python = os.path.join(VENV, "bin", "python")
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    if os.path.exists(python) and not in_venv and not os.environ.get("BENCHSYNC_NO_VENV"):
        os.execv(python, [python, os.path.realpath(sys.argv[0]), *sys.argv[1:]])
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from benchsync.cli import main as cli_main

    cli_main([subcommand, *sys.argv[1:]] if subcommand else sys.argv[1:])
