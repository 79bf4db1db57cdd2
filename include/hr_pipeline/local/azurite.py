"""Start, stop and find this checkout's Azurite (the pinned Azure Blob emulator, blob service only).

An emulator is *ours* only when all of these hold: its pid file names a live process, that
process's command line is Azurite's with ``--location <our data folder>``, and the process (or
a child of it) is the one listening on the port recorded beside the pid file. Anything else on
the port is another program (another developer's Azurite answers the same protocol), and is never
used, stopped or reported as ours.

Port: the one asked for (argument, or ``AZURITE_BLOB_PORT``) if free, else an error naming the
port and the variable; when none is asked for, 10000 if free, else the port of the last start,
else any free port (the start says so). In ``<data folder>``: ``azurite.pid``, ``azurite.port``
(kept after a stop: the next start prefers it), ``azurite.log``.

CLI (``scripts/azurite.sh`` runs it)::

    python -m hr_pipeline.local.azurite start|stop|status|port [DATA_DIR] [PORT]

From Python (``from hr_pipeline.local import azurite``)::

    instance = azurite.start(data_dir)      # Instance(pid, port, data_dir, started, note)
    azurite.own_instance(data_dir)          # the running instance of this folder, or None
    azurite.stop(data_dir)                  # True when it stopped one

The standard library, and psutil through ``hr_pipeline.local.ports``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hr_pipeline.local import PROJECT_ROOT, ports, state_dir

ROOT = PROJECT_ROOT
DEFAULT_PORT = 10000
VARIABLE = "AZURITE_BLOB_PORT"
EXECUTABLE = ROOT / "node_modules" / ".bin" / "azurite-blob"


class AzuriteError(RuntimeError):
    """Azurite could not be started (the message says why and where its log is)."""


@dataclass
class Instance:
    pid: int
    port: int
    data_dir: Path
    started: bool = False  # started by this call (False: it was already running)
    note: str | None = None  # e.g. "port 10000 is in use by ...; using port 10417 instead"

    @property
    def endpoint(self) -> str:
        return f"{ports.HOST}:{self.port}"


def _pid_file(data_dir: Path) -> Path:
    return Path(data_dir) / "azurite.pid"


def _port_file(data_dir: Path) -> Path:
    return Path(data_dir) / "azurite.port"


def log_file(data_dir: Path) -> Path:
    return Path(data_dir) / "azurite.log"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_ours(pid: int, data_dir: Path) -> bool:
    """A live Azurite process whose data folder is ``data_dir``."""
    if not ports.alive(pid):
        return False
    command = ports.command_line(pid) or ""
    # The location is the last argument (see start), so a folder that merely starts with ours
    # (".../azurite2") does not match.
    return "azurite" in command and command.endswith(f"--location {Path(data_dir).resolve()}")


def own_instance(data_dir: Path) -> Instance | None:
    """This folder's running Azurite, verified (pid file, live pid, command line, listener)."""
    data_dir = Path(data_dir).resolve()
    pid, port = _read_int(_pid_file(data_dir)), _read_int(_port_file(data_dir))
    if pid is None or port is None or not _is_ours(pid, data_dir):
        return None
    owned = ports.owned_by(port, [pid])
    if owned is False or (owned is None and not ports.answers(port)):
        return None
    return Instance(pid=pid, port=port, data_dir=data_dir)


def start(
    data_dir: Path,
    port: int | None = None,
    *,
    default: int = DEFAULT_PORT,
    variable: str = VARIABLE,
    timeout: float = 60.0,
) -> Instance:
    """Start Azurite on a port verified to be its own (or return this folder's running one).

    ``port``: the port asked for; None reads ``variable`` from the environment, and when that is
    unset too: ``default`` if free, else the last port of this folder, else a free one.
    Raises ``ports.PortBusy`` (the port asked for is taken) or ``AzuriteError``.
    """
    data_dir = Path(data_dir).resolve()
    source = None
    if port is None:
        port = ports.explicit_port(variable)
        source = variable if port is not None else None
    running = own_instance(data_dir)
    if running:
        if port is not None and port != running.port:
            raise AzuriteError(
                f"this checkout's Azurite ({data_dir}) already runs on port {running.port} "
                f"(pid {running.pid}), not {port}: stop it first (make azurite-stop, or make down)"
            )
        return running
    stop(data_dir)  # a live Azurite of this folder that does not hold its port: start clean

    note = None
    if port is None:
        port, note = ports.choose_port(default, variable, "Azurite", previous=_read_int(_port_file(data_dir)))
    elif not ports.is_free(port):
        raise ports.PortBusy(ports.busy_message(port, "Azurite", source))

    process = _launch(data_dir, port)
    return _wait_until_serving(process, data_dir, port, source, note, timeout)


def _launch(data_dir: Path, port: int) -> subprocess.Popen:
    """Azurite started on ``port`` with its data in ``data_dir`` (its pid and port recorded)."""
    if not EXECUTABLE.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=ROOT,
            check=True,
            stdout=sys.stderr,
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_file(data_dir), "wb") as log:
        process = subprocess.Popen(
            [
                str(EXECUTABLE),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--blobHost",
                ports.HOST,
                "--blobPort",
                str(port),
                "--location",
                str(data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,  # survives the caller; no terminal signals
        )
    _pid_file(data_dir).write_text(f"{process.pid}\n")
    _port_file(data_dir).write_text(f"{port}\n")

    return process


def _wait_until_serving(
    process: subprocess.Popen, data_dir: Path, port: int, source: str | None, note: str | None, timeout: float
) -> Instance:
    """The started Azurite once it answers on ``port`` and holds it itself; else an error (the
    process stopped) naming the port, or what Azurite logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _pid_file(data_dir).unlink(missing_ok=True)
            log_text = _tail(log_file(data_dir))
            if "EADDRINUSE" in log_text:
                raise ports.PortBusy(ports.busy_message(port, "Azurite", source))
            raise AzuriteError(
                f"Azurite exited at start (code {process.returncode}); {log_file(data_dir)}:\n{log_text}"
            )
        if ports.answers(port):
            if ports.owned_by(port, [process.pid]) is False:
                message = ports.busy_message(port, "Azurite", source)
                _kill(process.pid, data_dir)
                raise ports.PortBusy(message)
            return Instance(pid=process.pid, port=port, data_dir=data_dir, started=True, note=note)
        time.sleep(0.1)
    _kill(process.pid, data_dir)
    raise AzuriteError(f"Azurite did not open port {port} within {timeout:.0f} s; see {log_file(data_dir)}")


def stop(data_dir: Path, grace: float = 3.0) -> bool:
    """Stop this folder's Azurite; True when one was running. A pid file naming any other
    process (the pid was reused) is removed, and that process left alone."""
    data_dir = Path(data_dir).resolve()
    pid = _read_int(_pid_file(data_dir))
    stopped = False
    if pid is not None and _is_ours(pid, data_dir):
        _kill(pid, data_dir, grace)
        stopped = True
    _pid_file(data_dir).unlink(missing_ok=True)
    return stopped


def _kill(pid: int, data_dir: Path, grace: float = 3.0) -> None:
    # On SIGTERM Azurite closes gracefully, waiting for its clients' open keep-alive connections:
    # while the caller (a test session, say) still holds some it never exits. Wait a little,
    # then KILL: its data is flushed as it goes.
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _reap(pid):
        time.sleep(0.1)
    if _reap(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _reap(pid):
            time.sleep(0.05)
    _pid_file(data_dir).unlink(missing_ok=True)


def _reap(pid: int) -> bool:
    """True while ``pid`` is alive; collects it if it is our exited child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return ports.alive(pid)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    action = args[0] if args else "status"
    local = state_dir()
    data_dir = Path(args[1] if len(args) > 1 else local / "azurite").resolve()
    port = int(args[2]) if len(args) > 2 and args[2] else None
    if action == "start":
        try:
            instance = start(data_dir, port)
        except (ports.PortBusy, AzuriteError, ValueError) as error:
            print(f"Azurite not started: {error}", file=sys.stderr)
            return 1
        if instance.note:
            print(instance.note)
        state = "started" if instance.started else "already running"
        print(
            f"Azurite blob service on {instance.endpoint} ({state}, pid {instance.pid}, data in {data_dir})"
        )
        return 0
    if action == "stop":
        if stop(data_dir):
            print("Azurite stopped")
        return 0
    if action in ("status", "port"):
        instance = own_instance(data_dir)
        if action == "port":
            if instance:
                print(instance.port)
            return 0 if instance else 1
        print(f"running (pid {instance.pid}, port {instance.port})" if instance else "stopped")
        return 0 if instance else 1
    print(f"usage: {sys.argv[0]} start|stop|status|port [DATA_DIR] [PORT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
