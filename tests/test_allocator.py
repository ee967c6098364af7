"""allocator.keep_freed_memory: freed large blocks stay in the process for reuse instead of going back to the OS."""

import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MB tensor (touched); prints whether the setting took effect, the resident-memory
# growth (MB) after the free, and after release_freed_memory.
PROBE = """
import os, sys, torch
from attention_tuner.allocator import keep_freed_memory, release_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
before = rss()
x = torch.ones(64 * 2**20, dtype=torch.uint8)
del x
freed = rss() - before
release_freed_memory()
print(kept, freed, rss() - before)
"""


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # no confstr, or a C library without that name
        return False


def probe(mode: str) -> tuple[bool, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    kept, freed, released = out.split()
    return kept == "True", int(freed), int(released)


def test_freed_memory_is_kept_until_released():
    kept, freed, released = probe("keep")
    if not kept:
        assert not sys.platform.startswith("linux") or not glibc(), "glibc, yet mallopt did not take effect"
        pytest.skip("glibc's malloc only")
    assert freed >= 60, f"only {freed} MB of the freed 64 MB stayed in the process"
    assert released < 16, f"{released} MB still resident after release_freed_memory"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not glibc(), reason="glibc's malloc only")
def test_without_it_glibc_returns_the_block():
    """The probe can tell the two apart: by default glibc unmaps a freed 64 MB block."""
    kept, freed, _ = probe("default")
    assert not kept and freed < 16
