"""Process memory: keep freed memory in the heap (glibc), and the process's own peak resident size.

By default glibc serves each allocation above 32 MB (its largest mmap threshold) with a
fresh ``mmap`` and returns it to the system when freed; every step of instance
optimisation on a fine grid allocates and frees many such tensors, and the kernel then
zero-fills each page again on first touch. On the 2-core CPU used for the README's
figures a 2 mm lung instance-optimisation step took 0.87 s, 0.32 s of it system time for those
page faults (a micro-benchmark); with this setting 0.73 s and 0.01 s. The price is memory:
freed blocks stay with the process, so its peak grows (demo-lung, ``--io-steps 45
--io-upsample 2``: 2379 MB against 1887 MB before).

:func:`keep_freed_memory` turns ``mmap`` off for the heap (``M_MMAP_MAX = 0``) and returns
freed memory to the system only above ``trim_mb`` at the heap's top. The ``medreg``
commands call it at start; set ``MEDREG_MALLOC=system`` to keep glibc's defaults. It does
nothing off Linux/glibc. External tools run by the evaluation (ANTs, elastix, FireANTs)
run in their own processes and keep the defaults.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory(trim_mb: int = 1024) -> bool:
    """Apply the setting once per process; True when it is in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("MEDREG_MALLOC", "").lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_mb) << 20) == 1
    except (OSError, AttributeError):
        return False
    _applied = bool(ok)
    return _applied


def own_peak_rss_mb() -> float:
    """Peak RSS of this process's own address space in MB: ``VmHWM`` where ``/proc`` has it, else ``ru_maxrss``.

    Linux's ``ru_maxrss`` is at least the parent's resident size when it forked (it survives
    ``fork`` and ``execve``), so a worker started by a large process would report the
    parent's memory; ``VmHWM`` starts afresh with the worker's ``execve``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return ru_maxrss_mb()


def reset_peak_rss() -> bool:
    """Start this process's ``VmHWM`` afresh at its current resident size (Linux: ``/proc/self/clear_refs``).

    After it, :func:`own_peak_rss_mb` is the peak since this call, not since the process
    started: what one registration needs, not the largest one before it. False where the
    kernel does not offer it (then the peak stays the lifetime one).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def ru_maxrss_mb() -> float:
    """``ru_maxrss`` in MB (KiB on Linux, bytes on macOS): this process's peak, or more (see above)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


__all__ = ["keep_freed_memory", "own_peak_rss_mb", "reset_peak_rss", "ru_maxrss_mb"]
