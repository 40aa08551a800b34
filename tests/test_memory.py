"""medreg.memory: freed large tensors stay in the heap instead of being faulted in again."""

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from medreg.memory import keep_freed_memory
applied = keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    x = torch.ones(16 << 20)  # 64 MB, above glibc's largest mmap threshold
    del x
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(env_value):
    env = {k: v for k, v in os.environ.items() if k != "MEDREG_MALLOC"}
    if env_value is not None:
        env["MEDREG_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_tensors_are_not_faulted_in_again():
    applied, faults = _run(None)
    default_applied, default_faults = _run("system")
    assert applied and not default_applied
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert default_faults > 0.9 * 30 * pages  # glibc's default: every 64 MB block is a fresh mapping
    assert faults < 0.5 * default_faults  # the heap grows for a few blocks, then reuses them


RESET_SCRIPT = """
import numpy as np
from medreg.memory import own_peak_rss_mb, reset_peak_rss
x = np.ones(400 << 17)  # 400 MB of float64, touched
del x
high = own_peak_rss_mb()
ok = reset_peak_rss()
print(ok, high, own_peak_rss_mb())
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="/proc/self/clear_refs is Linux's")
def test_reset_peak_rss_starts_the_peak_afresh():
    env = {k: v for k, v in os.environ.items() if k != "MEDREG_MALLOC"}
    out = subprocess.run([sys.executable, "-c", RESET_SCRIPT], env=env, capture_output=True, text=True, check=True)
    ok, high, after = out.stdout.split()
    assert ok == "True" and float(high) > 400 and float(after) < float(high) - 300, out.stdout
