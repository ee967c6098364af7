"""allocator.keep_freed_memory: freed large blocks stay in the process for reuse instead of going back to the OS."""

import os
import subprocess
import sys

import pytest

# Frees a 100 MB tensor (touched) in a new thread, as Ray Tune runs a trial (a thread's own arena would serve
# it with mmap, so this also checks that threads share the main heap); returns the resident-memory growth, MB.
FREE_IN_A_THREAD = """
import os, threading, torch

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

def freed_in_a_thread():
    before = rss()
    def work():
        x = torch.ones(100 * 2**20, dtype=torch.uint8)
        del x
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return rss() - before
"""

# Prints whether the setting took effect, the growth after the free, and after release_freed_memory.
PROBE = FREE_IN_A_THREAD + """
import sys
from attention_tuner.allocator import keep_freed_memory, release_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
before = rss()
freed = freed_in_a_thread()
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
    assert freed >= 95, f"only {freed} MB of the freed 100 MB stayed in the process"
    assert released < 16, f"{released} MB still resident after release_freed_memory"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not glibc(), reason="glibc's malloc only")
def test_without_it_glibc_returns_the_block():
    """The probe can tell the two apart: by default glibc unmaps a freed 100 MB block."""
    kept, freed, _ = probe("default")
    assert not kept and freed < 16


RAY_PROBE = FREE_IN_A_THREAD + """
import ray
from attention_tuner.allocator import GLIBC_ENV
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False,
         runtime_env={"env_vars": dict(GLIBC_ENV)})
print(ray.get(ray.remote(freed_in_a_thread).remote()))
ray.shutdown()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not glibc(), reason="glibc's malloc only")
def test_ray_workers_started_with_the_environment_keep_freed_memory_in_threads():
    """What a local sweep's workers get: GLIBC_ENV in their environment from the start, so even a thread
    started among Ray's own threads keeps a freed 100 MB block (keep_freed_memory called late would not)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([sys.executable, "-c", RAY_PROBE], capture_output=True, text=True, check=True, env=env,
                         timeout=300).stdout
    assert int(out.split()[-1]) >= 95
