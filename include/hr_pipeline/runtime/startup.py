"""How long the current process has been running: a task's start-up, from its process's start
(a fork of a worker, or a new interpreter) to the task's first line of work."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def process_age_seconds(pid: int | str = "self") -> float | None:
    """Seconds since the process started, from the kernel's records (Linux ``/proc``, 10 ms
    resolution); ``None`` where there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # The fields after the command (in parentheses, which may hold spaces): the 22nd
            # field of the line, the start in clock ticks since boot, is the 20th after it.
            started_ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))


def log_start_up(task: str) -> float | None:
    """Log (and return) the process's age as the task's start-up."""
    age = process_age_seconds()
    if age is not None:
        log.info("%s: task start-up %.2f s (from its process's start to its first line of work)", task, age)
    return age
