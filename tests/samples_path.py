"""Where the real BRL-CAD benchmark sample files live, found relative to this file."""

from __future__ import annotations

from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def samples_dir() -> Path:
    """Return `<repo>/examples/samples` if present, else `<repo>/../shared/samples/brlcad`."""
    local = _REPO / "examples" / "samples"
    if local.is_dir():
        return local
    return _REPO.parent / "shared" / "samples" / "brlcad"
