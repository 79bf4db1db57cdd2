"""``runtime.memory``: freed large buffers leave the process.

Each case runs in a new interpreter (the allocator's state is per process): buffers of 1 MiB are
allocated with a small live object after each, which pins the heap above them, then freed. The
dynamic threshold has been raised first, as a task's first freed download block raises it. Without
the setting their pages stay in the process; with it they go back. The control proves the case
could fail.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROGRAM = """
import sys
from hr_pipeline.runtime.memory import return_large_buffers_to_the_system

def resident_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

if sys.argv[1] == "fixed":
    assert return_large_buffers_to_the_system()
first = bytearray(16 << 20)
del first  # one freed 16 MiB mapping: glibc raises its threshold past it
buffers, pins = [], []
for _ in range(200):
    buffer = bytearray(1 << 20)
    buffer[::4096] = b"x" * len(buffer[::4096])  # touched: resident
    buffers.append(buffer)
    pins.append(bytearray(64))
before = resident_mb()
buffers.clear()
print(before - resident_mb())
"""


def _freed_mb(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", _PROGRAM, mode], check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_large_buffers_go_back_to_the_system_only_with_the_threshold_fixed():
    assert _freed_mb("default") < 50, "control: without the setting the freed buffers stay resident"
    assert _freed_mb("fixed") > 150, "with the setting, 200 MiB of freed buffers leave the process"
