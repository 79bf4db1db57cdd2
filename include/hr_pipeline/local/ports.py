"""Which TCP ports are free, who listens on a port, and choosing a port that is ours.

The local services (Azurite for `make demo` / `make up`, the Airflow API for `make up`) must never
talk to a process that is not theirs: another developer's emulator on 10000 answers the same
protocol and would silently receive the demo's files. So a port is used only when it was free
before our process started and, once it answers, the process listening on it is ours.

Who listens on a port, and which processes descend from which, come from psutil (a dependency of
Airflow), the same way on Linux, macOS and Windows.

    choose_port(10000, "AZURITE_BLOB_PORT")   # -> (port, note): the variable's port, the default
                                              #    when free, else a free one; PortBusy if the
                                              #    variable names a busy port
    listener_pids(port)                       # -> {pid, ...}, None for an owner we cannot see;
                                              #    None when this system cannot tell
    owned_by(port, pids)                      # -> True / False / None (cannot tell)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

import psutil

HOST = "127.0.0.1"


class PortBusy(RuntimeError):
    """A port we were told to use (or had picked) is held by another process."""


def answers(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def is_free(port: int, host: str = HOST) -> bool:
    """True when nothing answers on host:port and a listener could bind it."""
    if answers(port, host):
        return False
    with socket.socket() as sock:
        # SO_REUSEADDR: a port in TIME_WAIT (a connection just closed) is free for a listener;
        # a port someone LISTENs on (on this address or 0.0.0.0) still fails to bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port the system considers free now (bind to 0)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- who listens ------------------------------------------------------------------------------
def _listening(connection, port: int) -> bool:
    return (
        connection.status == psutil.CONN_LISTEN and bool(connection.laddr) and connection.laddr.port == port
    )


def _listeners_by_process(port: int) -> set[int | None] | None:
    """The pids listening on ``port``, asking each process we may inspect; a listener none of
    them holds is another user's (``None``). None when no process at all could be inspected."""
    pids: set[int | None] = set()
    inspected = False
    for process in psutil.process_iter():
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        inspected = True
        if any(_listening(connection, port) for connection in connections):
            pids.add(process.pid)
    if not inspected:
        return None
    if not pids and answers(port):
        pids.add(None)
    return pids


def listener_pids(port: int) -> set[int | None] | None:
    """The pids listening on ``port`` (any address); a listener whose owner we cannot see counts
    as ``None`` (another user's process). Returns None when this system offers no way to tell."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS lists the system's sockets to root only
        return _listeners_by_process(port)
    # psutil gives no pid for a socket of a process we may not inspect.
    return {connection.pid for connection in connections if _listening(connection, port)}


# -- processes --------------------------------------------------------------------------------
def command_line(pid: int) -> str | None:
    """The command line of a process, or None when it is gone (or not readable)."""
    if pid <= 0:  # psutil takes no such pid; a pid file may hold one
        return None
    try:
        return " ".join(psutil.Process(pid).cmdline()).strip()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # a ZombieProcess too
        return False
    except psutil.AccessDenied:
        return True  # exists, another user's


def process_tree(pids: Iterable[int]) -> set[int]:
    """The given pids and all their descendants."""
    tree = set(pids)
    for pid in list(tree):
        if pid <= 0:
            continue
        try:
            tree |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            continue
    return tree


def owned_by(port: int, pids: Iterable[int]) -> bool | None:
    """True when every listener on ``port`` is one of ``pids`` or their descendants (and there
    is at least one); False when another process listens there; None when we cannot tell."""
    listeners = listener_pids(port)
    if listeners is None:
        return None
    return bool(listeners) and listeners <= process_tree(pids)


def describe_listeners(port: int) -> str:
    """' by pid 123 (python3 -m http.server 10000)', or '' when nobody can be named."""
    listeners = listener_pids(port) or set()
    named = []
    for pid in sorted(p for p in listeners if p is not None):
        command = command_line(pid) or "?"
        named.append(f"pid {pid} ({command[:80]}{'...' if len(command) > 80 else ''})")
    if None in listeners:
        named.append("a process of another user")
    return " by " + ", ".join(named) if named else ""


# -- choosing ---------------------------------------------------------------------------------
def explicit_port(variable: str, env: Mapping[str, str] | None = None) -> int | None:
    """The port a variable sets (None when unset or empty); ValueError when it is no port."""
    value = (os.environ if env is None else env).get(variable, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{variable}={value!r} is not a TCP port number")
    return int(value)


def busy_message(port: int, what: str, variable: str | None) -> str:
    """Why ``port`` cannot be used and how to choose another."""
    label = f"{variable}={port}" if variable else what
    how = (
        f"Set {variable} to a free port (e.g. {variable}={port + 1}), or unset it to let a "
        "free port be picked."
        if variable
        else "Choose another port."
    )
    return f"port {port} ({label}) is already in use{describe_listeners(port)}. {how}"


def choose_port(
    default: int,
    variable: str | None,
    what: str,
    env: Mapping[str, str] | None = None,
    previous: int | None = None,
) -> tuple[int, str | None]:
    """The port to start a service of ours on, and a note to print when it is not the default.

    - ``variable`` set (e.g. AZURITE_BLOB_PORT=10010): that port, or PortBusy when it is taken;
    - unset: ``default`` when free, else ``previous`` (the port of the last run) when free, else
      any free port.
    """
    wanted = explicit_port(variable, env) if variable else None
    if wanted is not None:
        if not is_free(wanted):
            raise PortBusy(busy_message(wanted, what, variable))
        return wanted, None
    if is_free(default):
        return default, None
    for candidate in ([previous] if previous and previous != default else []) + [None]:
        port = candidate or free_port()
        if is_free(port):
            hint = f" (set {variable} to choose)" if variable else ""
            return port, (
                f"{what}: port {default} is in use{describe_listeners(default)}; "
                f"using port {port} instead{hint}"
            )
    raise PortBusy(f"{what}: no free port found")  # pragma: no cover - free_port() just was free
