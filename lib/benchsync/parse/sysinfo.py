"""Machine details from the system information blocks at the end of a run log.

Since 2009 `bench/run.sh` appends `Collecting system … information (via X)` blocks: the
output of `sysctl` (Linux `kernel.*`, BSD/macOS `hw.*`, `machdep.cpu.*`), `/proc/cpuinfo`
and, since 2014, `lscpu`. Keys are matched case-insensitively; lscpu wins over cpuinfo,
which wins over sysctl, because lscpu counts sockets and logical CPUs itself.
"""

from __future__ import annotations

from .model import Machine, clip, to_float, to_int

# key (lower case, single spaces) -> (field, source rank: lower wins)
_COLON_KEYS = {
    "model name": ("cpu_model", 1),
    "vendor id": ("cpu_vendor", 1),
    "vendor_id": ("cpu_vendor", 2),
    "cpu mhz": ("cpu_mhz", 1),
    "cpu max mhz": ("cpu_mhz_max", 1),
    "cpu(s)": ("cores", 1),
    "socket(s)": ("sockets", 1),
    "architecture": ("arch", 1),
    "cpu": ("cpu_model_alt", 3),  # PowerPC /proc/cpuinfo
    "cpu model": ("cpu_model_alt", 3),  # MIPS /proc/cpuinfo
}
_SYSCTL_KEYS = {
    "kernel.hostname": "hostname",
    "kernel.osrelease": "os_release",
    "kernel.ostype": "os",
    "kernel.arch": "arch",
    "kern.hostname": "hostname",
    "kern.osrelease": "os_release",
    "kern.ostype": "os",
    "hw.machine": "arch",
    "hw.model": "cpu_model_alt",
    "machdep.cpu.brand_string": "cpu_model",
    "machdep.cpu.vendor": "cpu_vendor",
    "hw.ncpu": "cores",
    "hw.logicalcpu": "cores",
    "hw.packages": "sockets",
    "hw.clockrate": "cpu_mhz",
    "hw.cpufrequency": "cpu_hz",
}


class SysInfo:
    """Collects `key: value` / `key = value` lines and turns them into Machine fields."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[int, str]] = {}
        self.processors = 0
        self.physical_ids: set[str] = set()

    def _put(self, name: str, rank: int, value: str) -> None:
        value = value.strip()
        if value and (name not in self.values or rank < self.values[name][0]):
            self.values[name] = (rank, value)

    def feed(self, line: str) -> None:
        """Take one line of a system information block."""
        if " = " in line:
            key, _, value = line.partition(" = ")
            name = _SYSCTL_KEYS.get(key.strip())
            if name is None and key.startswith(("hw.", "machdep.")):
                name = _SYSCTL_KEYS.get(key.strip().lower())
            if name:
                self._put(name, 4, value)
            return
        if ":" in line:
            key, _, value = line.partition(":")
            self._feed_colon(key, value)

    def _feed_colon(self, key: str, value: str) -> None:
        low = " ".join(key.lower().split())
        if low == "processor":
            self.processors += 1
        elif low == "physical id":
            self.physical_ids.add(value.strip())
        elif low == "cpu cores" or low == "siblings":
            self._put("cores_cpuinfo_" + low.replace(" ", "_"), 2, value)
        hit = _COLON_KEYS.get(low)
        if hit:
            self._put(hit[0], hit[1], value)

    def _get(self, name: str) -> str | None:
        hit = self.values.get(name)
        return hit[1] if hit else None

    def apply(self, machine: Machine) -> None:
        """Fill the machine fields that the uname line left empty."""
        machine.hostname = machine.hostname or clip(self._get("hostname"))
        machine.os = machine.os or clip(self._get("os"))
        machine.os_release = machine.os_release or clip(self._get("os_release"))
        machine.arch = machine.arch or clip(self._get("arch"))
        machine.cpu_model = machine.cpu_model or clip(
            self._get("cpu_model") or self._get("cpu_model_alt")
        )
        machine.cpu_vendor = machine.cpu_vendor or clip(self._get("cpu_vendor"))
        machine.cpu_mhz = machine.cpu_mhz or self._mhz()
        machine.cores = machine.cores or to_int(self._get("cores")) or (self.processors or None)
        machine.sockets = machine.sockets or to_int(self._get("sockets"))
        if machine.sockets is None and self.physical_ids:
            machine.sockets = len(self.physical_ids)

    def _mhz(self) -> float | None:
        mhz = to_float(self._get("cpu_mhz")) or to_float(self._get("cpu_mhz_max"))
        if mhz is None:
            hz = to_float(self._get("cpu_hz"))
            mhz = round(hz / 1e6, 3) if hz else None
        return mhz
