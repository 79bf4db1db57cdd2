"""``[core] hostname_callable`` for the Celery test stack: each worker names its task instances.

Both test workers run on one machine, so the default (the FQDN) would record the same
``hostname`` on every task instance. A task process is forked (``os.fork``) from its Celery worker,
so it still has the worker's command line: the ``--celery-hostname`` given there (``w1@%h``) is the
hostname recorded, with ``%h`` expanded as Celery does. ``HR_WORKER_HOSTNAME`` overrides it; any
other process (scheduler, api-server) gets the FQDN as usual.
"""

from __future__ import annotations

import os
import socket
import sys


def celery_hostname(argv: list[str]) -> str | None:
    for flag in ("--celery-hostname", "-H"):
        if flag in argv[:-1]:
            return argv[argv.index(flag) + 1]
    for arg in argv:
        if arg.startswith("--celery-hostname="):
            return arg.split("=", 1)[1]
    return None


def hostname() -> str:
    fqdn = socket.getfqdn()
    name = os.environ.get("HR_WORKER_HOSTNAME") or celery_hostname(sys.argv)
    return name.replace("%h", fqdn) if name else fqdn
