"""Ports of the local services: a port is used only when it is free and, once in use, ours.

A "foreign listener" here is what a developer's own Azurite (or any server) looks like to us:
another process, bound to a port on 127.0.0.1, that we did not start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hr_pipeline.local import azurite, ports
from hr_pipeline.local import env as local_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]


LISTENER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
time.sleep(600)
"""


def start_listener(port: int) -> subprocess.Popen:
    """Another process listening on 127.0.0.1:<port> (a plain Python socket server)."""
    process = subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "listening"
    return process


@pytest.fixture
def foreign():
    """(port, process) of a foreign listener, stopped after the test."""
    port = ports.free_port()
    process = start_listener(port)
    yield port, process
    process.kill()
    process.wait()


def test_a_port_with_a_listener_is_busy_and_its_owner_is_named(foreign):
    port, process = foreign
    assert not ports.is_free(port)
    assert ports.answers(port)
    assert ports.listener_pids(port) == {process.pid}
    message = ports.busy_message(port, "Azurite", "AZURITE_BLOB_PORT")
    assert f"port {port} (AZURITE_BLOB_PORT={port}) is already in use by pid {process.pid}" in message
    assert "AZURITE_BLOB_PORT" in message.split(". ", 1)[1]  # and how to choose another


def test_ownership_is_the_listener_process_or_its_children(foreign):
    port, process = foreign
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert ports.owned_by(port, [process.pid]) is True
        assert ports.owned_by(port, [os.getpid()]) is True  # the listener is our child
        assert ports.owned_by(port, [other.pid]) is False  # a sibling does not own it
        assert ports.owned_by(ports.free_port(), [process.pid]) is False  # nobody listens
    finally:
        other.kill()
        other.wait()


def test_a_closed_port_is_free_again(foreign):
    port, process = foreign
    process.kill()
    process.wait()
    assert ports.is_free(port)
    assert ports.listener_pids(port) == set()


def test_without_the_systems_socket_table_each_process_is_asked(foreign, monkeypatch):
    """macOS lists the system's sockets to root only (psutil raises AccessDenied): the listeners
    are then found process by process. The refusal is simulated, Linux does not make it."""
    import psutil

    def refused(kind="inet"):
        raise psutil.AccessDenied()

    port, process = foreign
    monkeypatch.setattr(psutil, "net_connections", refused)
    assert ports.listener_pids(port) == {process.pid}
    assert ports.owned_by(port, [process.pid]) is True
    assert ports.listener_pids(ports.free_port()) == set()


def test_processes_alive_gone_and_named(foreign):
    port, process = foreign
    assert ports.alive(process.pid)
    assert ports.command_line(process.pid).startswith(sys.executable)
    assert ports.describe_listeners(port).startswith(f" by pid {process.pid} ({sys.executable}")
    process.kill()
    process.wait()
    assert not ports.alive(process.pid)
    assert ports.command_line(process.pid) is None
    assert ports.describe_listeners(port) == ""
    assert not ports.alive(0)
    assert ports.process_tree([0, process.pid]) == {0, process.pid}


def test_an_explicit_busy_port_is_refused_naming_the_port_and_the_variable(foreign):
    port, _ = foreign
    with pytest.raises(ports.PortBusy) as refused:
        ports.choose_port(10000, "AZURITE_BLOB_PORT", "Azurite", env={"AZURITE_BLOB_PORT": str(port)})
    assert f"port {port} (AZURITE_BLOB_PORT={port}) is already in use" in str(refused.value)


def test_an_explicit_free_port_is_taken_as_is():
    port = ports.free_port()
    assert ports.choose_port(10000, "AZURITE_BLOB_PORT", "Azurite", env={"AZURITE_BLOB_PORT": str(port)}) == (
        port,
        None,
    )


def test_a_busy_default_moves_to_a_free_port_and_says_so(foreign):
    busy, _ = foreign
    port, note = ports.choose_port(busy, "AZURITE_BLOB_PORT", "Azurite", env={})
    assert port != busy
    assert ports.is_free(port)
    assert f"port {busy} is in use" in note
    assert f"using port {port} instead" in note


def test_a_busy_default_prefers_the_previous_port_when_free(foreign):
    busy, _ = foreign
    previous = ports.free_port()
    assert ports.choose_port(busy, "AZURITE_BLOB_PORT", "Azurite", env={}, previous=previous)[0] == previous


def test_a_variable_that_is_no_port_is_an_error():
    with pytest.raises(ValueError, match="AIRFLOW_API_PORT='http'"):
        ports.explicit_port("AIRFLOW_API_PORT", {"AIRFLOW_API_PORT": "http"})


def test_an_azurite_pid_file_naming_another_process_is_not_ours(tmp_path, foreign):
    """A pid file left behind, whose pid now belongs to another program on the same port: the
    emulator is not running, and stopping it leaves that program alone."""
    port, process = foreign
    (tmp_path / "azurite.pid").write_text(f"{process.pid}\n")
    (tmp_path / "azurite.port").write_text(f"{port}\n")
    assert azurite.own_instance(tmp_path) is None
    assert azurite.stop(tmp_path) is False
    assert process.poll() is None  # still running
    assert not (tmp_path / "azurite.pid").exists()


# -- make up ------------------------------------------------------------------------------------
@pytest.fixture
def stack_module(monkeypatch):
    from hr_pipeline.local import stack

    for variable in ("AIRFLOW_API_PORT", "AZURITE_BLOB_PORT"):
        monkeypatch.delenv(variable, raising=False)
    return stack


def test_make_up_refuses_an_explicit_busy_api_port(stack_module, tmp_path, foreign, monkeypatch):
    port, _ = foreign
    monkeypatch.setenv("AIRFLOW_API_PORT", str(port))
    expected = rf"port {port} \(AIRFLOW_API_PORT={port}\) is already in use"
    with pytest.raises(ports.PortBusy, match=expected):
        stack_module.choose_ports(tmp_path, running=False)


def test_make_up_moves_off_busy_default_ports(stack_module, tmp_path, foreign, monkeypatch):
    busy, _ = foreign
    monkeypatch.setattr(local_env, "DEFAULT_API_PORT", busy)
    monkeypatch.setattr(azurite, "DEFAULT_PORT", busy)
    chosen, notes = stack_module.choose_ports(tmp_path, running=False)
    assert busy not in chosen.values()
    assert len(set(chosen.values())) == len(chosen) == 4  # api, blob, two log servers
    assert any("the Airflow API: port" in note for note in notes)
    assert any("Azurite: port" in note for note in notes)


def test_a_running_stack_keeps_the_ports_of_its_env_file(stack_module, tmp_path, monkeypatch):
    local_env.write_stack_env(
        PROJECT_ROOT,
        tmp_path,
        api_port=18080,
        blob_port=10555,
        log_server_port=18793,
        trigger_log_server_port=18794,
    )
    chosen, notes = stack_module.choose_ports(tmp_path, running=True)
    assert (chosen, notes) == (
        {"api_port": 18080, "blob_port": 10555, "log_server_port": 18793, "trigger_log_server_port": 18794},
        [],
    )
    monkeypatch.setenv("AIRFLOW_API_PORT", "18081")
    with pytest.raises(ports.PortBusy, match="make down"):
        stack_module.choose_ports(tmp_path, running=True)
