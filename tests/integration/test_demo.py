"""`make demo` (hr_pipeline.local.demo) and the emulator it starts, as a user runs them.

- the emulator never uses a port another process holds: it refuses (the port asked for) or moves
  to a free one (the default), and a pid file naming another process is not taken for ours;
- the demo's console is a screen or two, with the counts and no log records, and its exit status
  says whether every run succeeded (naming the table and why when one did not);
- the demo stops the emulator it started, and leaves this checkout's running one running.

Each demo runs in its own state folder (HR_LOCAL_DIR): the developer's .local/ is not touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hr_pipeline.local import azurite, ports
from tests.conftest import PROJECT_ROOT, SAMPLE_DATA, free_port, skip_or_fail

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

AZURITE_SH = PROJECT_ROOT / "scripts" / "azurite.sh"
DEMO = ("-m", "hr_pipeline.local.cli", "demo")  # what `make demo` runs (hr-pipeline demo)
MAX_LINES = 150
# What a log record looks like, whichever framework wrote it: a leading timestamp (structlog,
# Airflow's classic format), a structlog level tag, a stdlib "LEVEL:name:" or " LEVEL - " prefix,
# a traceback, or Great Expectations' registration chatter.
LOG_RECORD = re.compile(
    r"^\s*\[?\d{4}-\d\d-\d\d[T ]\d\d:\d\d"
    r"|\[\s*(debug|info|warning|error|critical)\s*\]"
    r"|^(DEBUG|INFO|WARNING|ERROR|CRITICAL)[:\s]|\s(DEBUG|INFO|WARNING|ERROR|CRITICAL) - "
    r"|Traceback \(most recent call last\)|Skipping registering"
)
LISTENER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module", autouse=True)
def node():
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed: Azurite cannot run")


@pytest.fixture
def foreign():
    """(port, process): another program listening on 127.0.0.1 (as another Azurite would)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "listening"
    yield port, process
    process.kill()
    process.wait()


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_")) and k not in ("AIRFLOW_HOME",)
    }
    env.pop("AZURITE_BLOB_PORT", None)
    env.update(extra)
    return env


def azurite_sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(AZURITE_SH), *args], capture_output=True, text=True, env=clean_env(**env), timeout=120
    )


# -- the emulator -------------------------------------------------------------------------------
def test_azurite_refuses_a_port_another_process_listens_on(tmp_path, foreign):
    port, process = foreign
    for args, env in (((str(tmp_path), str(port)), {}), ((str(tmp_path),), {"AZURITE_BLOB_PORT": str(port)})):
        result = azurite_sh("start", *args, **env)
        assert result.returncode == 1, result.stdout
        assert "Azurite blob service on" not in result.stdout
        assert f"port {port}" in result.stderr
        assert f"pid {process.pid}" in result.stderr
        if env:
            assert f"AZURITE_BLOB_PORT={port}" in result.stderr
    assert process.poll() is None  # left alone
    assert not (tmp_path / "azurite.pid").exists()
    assert azurite_sh("status", str(tmp_path)).returncode == 1


def test_azurite_moves_off_a_busy_default_port_and_verifies_the_listener(tmp_path, foreign):
    busy, process = foreign
    instance = azurite.start(tmp_path, default=busy)
    try:
        assert instance.started
        assert instance.port != busy
        assert f"port {busy} is in use by pid {process.pid}" in instance.note
        assert ports.owned_by(instance.port, [instance.pid]) is True
        assert ports.owned_by(busy, [instance.pid]) is False
        # Started again: the same, verified instance is reused.
        again = azurite.start(tmp_path, default=busy)
        assert (again.pid, again.port, again.started) == (instance.pid, instance.port, False)
        status = azurite_sh("status", str(tmp_path))
        assert status.stdout.strip() == f"running (pid {instance.pid}, port {instance.port})"
        assert azurite_sh("port", str(tmp_path)).stdout.strip() == str(instance.port)
        # A different explicit port while it runs: refused, not a second emulator.
        with pytest.raises(azurite.AzuriteError, match=f"already runs on port {instance.port}"):
            azurite.start(tmp_path, port=free_port())
    finally:
        assert azurite_sh("stop", str(tmp_path)).stdout.strip() == "Azurite stopped"
    assert not ports.alive(instance.pid)
    assert ports.is_free(instance.port)
    assert process.poll() is None


def test_a_pid_file_naming_another_process_is_neither_reused_nor_stopped(tmp_path, foreign):
    port, process = foreign
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "azurite.pid").write_text(f"{process.pid}\n")
    (tmp_path / "azurite.port").write_text(f"{port}\n")
    assert azurite_sh("status", str(tmp_path)).returncode == 1
    started = azurite_sh("start", str(tmp_path), AZURITE_BLOB_PORT=str(free_port()))
    try:
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" not in started.stdout
        assert int((tmp_path / "azurite.pid").read_text()) != process.pid
    finally:
        azurite_sh("stop", str(tmp_path))
    assert process.poll() is None


# -- the demo -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-state")


def run_demo(state: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """hr_pipeline.local.demo as `make demo` runs it, stdout and stderr merged as a terminal shows them."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *DEMO, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=900,
        env=clean_env(**{"HR_LOCAL_DIR": str(state), "AZURITE_BLOB_PORT": str(free_port()), **env}),
    )
    return result, time.monotonic() - started


def counts(output: str) -> dict[str, tuple[str, int, int, int]]:
    """The 'Rows per table' lines: table -> (run state, rows, loaded, rejected)."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"(departments|jobs|hired_employees)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s", line)
        if match:
            found[match[1]] = (match[2], int(match[3]), int(match[4]), int(match[5]))
    return found


def assert_readable(output: str) -> None:
    lines = output.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{output}"
    records = [line for line in lines if LOG_RECORD.search(line)]
    assert not records, "log records on the console:\n" + "\n".join(records[:20])


def test_the_demo_prints_a_screen_of_results_and_stops_its_emulator(state_dir):
    result, seconds = run_demo(state_dir, "--data", str(SAMPLE_DATA))
    output = result.stdout
    print(
        f"\n[demo] sample data: exit {result.returncode}, {len(output.splitlines())} lines, {seconds:.1f} s"
    )
    assert result.returncode == 0, output
    assert_readable(output)
    assert counts(output) == {
        "departments": ("success", 12, 12, 0),
        "jobs": ("success", 183, 183, 0),
        "hired_employees": ("success", 1999, 1929, 70),
    }
    rejects_line = next(line for line in output.splitlines() if line.startswith("hired_employees  success"))
    assert "rejected/hired_employees/" in rejects_line
    assert rejects_line.endswith(".csv")
    for table in ("departments", "jobs", "hired_employees"):
        assert re.search(rf"^{table}\s+uploading {table}\.csv .* done in [\d.]+ s$", output, re.M)
        assert re.search(rf"^{table}\s+ingesting \.\.\. done in [\d.]+ s: ", output, re.M)
    # The departments above the 2021 mean, the first quarterly rows and how to get the rest.
    assert "departments_above_mean_2021, 7 rows" in output
    assert re.search(r"^ 8  Support\s+216$", output, re.M)
    assert re.search(r"quarterly_hires_2021, the first 10 of \d+ rows", output)
    assert "SELECT * FROM quarterly_hires_2021 ORDER BY department, job" in output
    log_file = state_dir / "logs" / "demo.log"
    assert f"Framework logs (Airflow, Great Expectations, task logs): {log_file}" in output
    framework = [
        line
        for line in log_file.read_text().splitlines()
        if not line.startswith("[demo]") and LOG_RECORD.search(line)
    ]
    assert any("[DAG TEST]" in line for line in framework)  # the log records went there
    assert f"set -a; . {state_dir / 'airflow.env'}; set +a" in output
    assert str(state_dir / "warehouse.db") in output
    # Its own emulator, on the port it wrote to airflow.env, stopped at the end.
    assert "started for the demo, stopped when it ends" in output
    assert azurite.own_instance(state_dir / "azurite") is None


def test_a_failed_run_fails_the_demo_naming_the_table_and_why(state_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    (data / "jobs.csv").write_bytes(b"1,Engineer\n\x00\x01\x02 binary\n")
    # This checkout's emulator already runs (as after `make up`): reused, and left running.
    instance = azurite.start(state_dir / "azurite", port=free_port())
    try:
        result, seconds = run_demo(state_dir, "--data", str(data), AZURITE_BLOB_PORT=str(instance.port))
        output = result.stdout
        print(f"\n[demo] binary jobs.csv: exit {result.returncode}, {seconds:.1f} s")
        assert result.returncode == 1, output
        assert_readable(output)
        assert (
            f"Azurite blob service on 127.0.0.1:{instance.port} (this checkout's, already running"
        ) in output
        assert re.search(r"^jobs\s+ingesting \.\.\. FAILED after", output, re.M)
        failure = next(line for line in output.splitlines() if line.startswith("FAILED:"))
        assert failure.startswith("FAILED: ingest_table for jobs: ")
        assert "jobs.csv cannot be read" in failure
        assert "binary" in failure
        assert counts(output)["departments"] == ("success", 12, 12, 0)
        assert "The metric tables were not published" in output
        assert "quarterly_hires_2021" not in output
        assert azurite.own_instance(state_dir / "azurite").pid == instance.pid
    finally:
        azurite.stop(instance.data_dir)


def test_the_demo_refuses_a_busy_emulator_port_before_doing_anything(tmp_path, foreign):
    port, process = foreign
    result, _ = run_demo(tmp_path / "state", AZURITE_BLOB_PORT=str(port))
    assert result.returncode == 1
    assert f"port {port} (AZURITE_BLOB_PORT={port}) is already in use by pid {process.pid}" in result.stdout
    assert "ingesting" not in result.stdout
    assert "uploading" not in result.stdout
    assert process.poll() is None


def test_a_missing_extract_is_named(tmp_path):
    (tmp_path / "departments.csv").write_text("1,Sales\n")
    result, _ = run_demo(tmp_path / "state", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "no extract for table jobs" in result.stdout
    assert "no extract for table hired_employees" in result.stdout
