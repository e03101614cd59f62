"""What a timing is measured on: the CPU's model, cores and vector flags (no torch import, so
the render benchmarks can record it too)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# the flags worth printing beside a timing (what the vector units can do)
TIMING_CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_tile",
    "asimd",
    "sve",
    "bf16",
)


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """The CPU's model name and its feature flags (x86 ``flags``, Arm ``Features``); an empty
    set where the file does not exist (macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.machine(), flags


def cpu_summary(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """One line for a timing record: model, cores and the vector flags present."""
    model, flags = cpu_info(cpuinfo)
    shown = [f for f in TIMING_CPU_FLAGS if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(shown) or 'none of ' + ' '.join(TIMING_CPU_FLAGS)}"


def machine_record(**extra) -> dict:
    """The ``machine`` entry of a benchmark's JSON: the CPU line of :func:`cpu_summary` (model,
    cores, vector flags), Python, platform and load average, plus ``extra`` (package versions,
    threads)."""
    return {
        "cpu": cpu_summary(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **extra,
    }
