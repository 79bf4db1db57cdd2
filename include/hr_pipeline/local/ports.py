"""Which TCP ports are free, who listens on a port, and choosing a port that is ours.

The local services (Azurite for `make demo` / `make up`, the Airflow API for `make up`) must never
talk to a process that is not theirs: another developer's emulator on 10000 answers the same
protocol and would silently receive the demo's files. So a port is used only when it was free
before our process started and, once it answers, the process listening on it is ours.

Standard library only (the Azurite launcher may run before the virtual environment exists).

    choose_port(10000, "AZURITE_BLOB_PORT")   # -> (port, note): the variable's port, the default
                                              #    when free, else a free one; PortBusy if the
                                              #    variable names a busy port
    listener_pids(port)                       # -> {pid, ...}, None for an owner we cannot see;
                                              #    None when this system cannot tell
    owned_by(port, pids)                      # -> True / False / None (cannot tell)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

HOST = "127.0.0.1"
LISTEN = "0A"  # TCP state in /proc/net/tcp


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
def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes LISTENing on ``port`` (any address), from /proc/net/tcp{,6}; None if no /proc."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return None
    inodes = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _socket_owners(inodes: set[str]) -> dict[str, set[int]]:
    """inode -> pids holding it open (only the processes whose fds we may read)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[str, set[int]] = {inode: set() for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                owners[wanted[target]].add(int(proc.name))
    return owners


def listener_pids(port: int) -> set[int | None] | None:
    """The pids listening on ``port``; a listener whose owner we cannot see counts as ``None``
    (another user's process). Returns None when this system offers no way to tell."""
    inodes = _listening_inodes(port)
    if inodes is not None:
        pids: set[int | None] = set()
        for owner_pids in _socket_owners(inodes).values():
            pids |= owner_pids if owner_pids else {None}
        return pids
    if shutil.which("lsof"):  # macOS and other systems without /proc
        result = subprocess.run(
            ["lsof", "-nP", "-t", f"-iTCP:{port}", "-sTCP:LISTEN"], capture_output=True, text=True
        )
        pids = {int(p) for p in result.stdout.split()}
        if not pids and answers(port):
            pids = {None}
        return pids
    return None


# -- processes --------------------------------------------------------------------------------
def command_line(pid: int) -> str | None:
    """The command line of a process, or None when it is gone (or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        return None
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() or None


def alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return False
    except OSError:
        pass
    result = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return bool(result.stdout.strip()) and not result.stdout.strip().startswith("Z")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every visible process."""
    parents = {}
    if Path("/proc/self").exists():
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        return parents
    result = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        pid, ppid = line.split()
        parents[int(pid)] = int(ppid)
    return parents


def process_tree(pids: Iterable[int]) -> set[int]:
    """The given pids and all their descendants."""
    tree = set(pids)
    parents = _parents()
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= children
        grew = bool(children)
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
