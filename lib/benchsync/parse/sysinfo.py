"""Machine details from the system information blocks at the end of a run log.

Since 2009 `bench/run.sh` appends `Collecting system … information (via X)` blocks: the
output of `sysctl` (Linux `kernel.*`, BSD/macOS `hw.*`, `machdep.cpu.*`), `/proc/cpuinfo`
and, since 2014, `lscpu`. The block is searched as a whole (a `str.find` per key, first
match wins, in the order lscpu, /proc/cpuinfo, sysctl), which is much faster than a
per-line loop or a multiline regex over the several hundred `kernel.*` lines.
"""

from __future__ import annotations

from .model import Machine, clip, to_float, to_int

# Each field: line keys tried in order (lscpu, /proc/cpuinfo, sysctl); the first found wins.
_FIELDS: dict[str, tuple[str, ...]] = {
    "cpu_model": (
        "Model name",
        "model name",
        "machdep.cpu.brand_string",
        "hw.model",
        "cpu model",
        "cpu",
    ),
    "cpu_vendor": ("Vendor ID", "vendor_id", "machdep.cpu.vendor"),
    "cpu_mhz": ("CPU MHz", "cpu MHz", "CPU max MHz", "hw.clockrate"),
    "cores": ("CPU(s)", "hw.logicalcpu", "hw.ncpu"),
    "sockets": ("Socket(s)", "hw.packages"),
    "arch": ("Architecture", "kernel.arch", "hw.machine"),
    "hostname": ("kernel.hostname", "kern.hostname"),
    "os": ("kernel.ostype", "kern.ostype"),
    "os_release": ("kernel.osrelease", "kern.osrelease"),
}


def _values(block: str, key: str) -> list[str]:
    """Every value of `key: value` / `key = value` lines (key at a line start)."""
    found = []
    needle = "\n" + key
    start = 0
    while True:
        index = block.find(needle, start)
        if index < 0:
            return found
        start = index + len(needle)
        end = block.find("\n", start)
        rest = block[start : end if end >= 0 else len(block)].lstrip(" \t")
        if rest[:1] in (":", "=") and rest[1:].strip():
            found.append(rest[1:].strip())


def _first(block: str, name: str) -> str | None:
    for key in _FIELDS[name]:
        values = _values(block, key)
        if values:
            return values[0]
    return None


def _mhz(block: str) -> float | None:
    mhz = to_float(_first(block, "cpu_mhz"))
    if mhz is None:
        hz = to_float((_values(block, "hw.cpufrequency") or [""])[0])
        mhz = round(hz / 1e6, 3) if hz else None
    return mhz


def apply_sysinfo(block: str, machine: Machine) -> None:
    """Fill the machine fields that the uname line left empty from a system-info block."""
    if not block:
        return
    for name in ("hostname", "os", "os_release", "arch", "cpu_model", "cpu_vendor"):
        if getattr(machine, name) is None:
            setattr(machine, name, clip(_first(block, name)))
    if machine.cpu_mhz is None:
        machine.cpu_mhz = _mhz(block)
    if machine.cores is None:
        machine.cores = to_int(_first(block, "cores")) or (len(_values(block, "processor")) or None)
    if machine.sockets is None:
        machine.sockets = to_int(_first(block, "sockets"))
        if machine.sockets is None:
            ids = set(_values(block, "physical id"))
            machine.sockets = len(ids) or None
