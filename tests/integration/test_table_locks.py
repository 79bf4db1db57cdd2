"""Per-table locks across processes (``Warehouse.table_locks``), on SQLite and PostgreSQL.

Each "run" is a separate Python process (the warehouse's own locks: flock on SQLite, advisory
locks on PostgreSQL, work across processes, not threads of one). A worker process reads commands
on its stdin (take these locks / release them) and reports on its stdout: ``ACQUIRED``,
``RELEASED`` and the warehouse's log lines (``LOG ...``). The tests wait for those lines with
bounded polling; no assertion is made on how long anything took.

"Still waiting" is proven, not timed: a worker that logged the waiting message had its
non-blocking attempt refused, and while the holder has not released, it cannot hold the lock; the
holder's release is then what lets it through.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import datetime

import pytest

from hr_pipeline.backup import backups as backup_logic
from hr_pipeline.backup import restore as restore_logic
from hr_pipeline.warehouse.facade import WAITING_MESSAGE, WarehouseError, lock_plan
from tests.integration.test_backup_restore_dags import fill, table_rows

TIMEOUT = 120  # seconds: a bound on polling, never an expected duration
WAITING = "waiting for the lock on"

WORKER = r"""
import json, logging, sys
from hr_pipeline.warehouse.facade import Warehouse

handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("LOG %(message)s"))
for name in ("hr_pipeline", "hr_pipeline.warehouse.facade"):
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler] if name == "hr_pipeline" else []
    logger.setLevel(logging.INFO)
    logger.propagate = name != "hr_pipeline"
warehouse = Warehouse()
held = None
print("READY", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "lock":
        held = warehouse.table_locks(exclusive=command["exclusive"], shared=command["shared"])
        held.__enter__()
        print("ACQUIRED", flush=True)
    elif command["op"] == "release":
        held.__exit__(None, None, None)
        held = None
        print("RELEASED", flush=True)
"""


class Worker:
    """A separate process taking and releasing table locks on command."""

    def __init__(self, name: str):
        self.name = name
        env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=env,
            text=True,
            bufsize=1,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self.cursor = 0  # lines before it were matched by an expect()
        self.arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.arrived:
                self.lines.append(line.rstrip("\n"))
                self.arrived.notify_all()
        with self.arrived:
            self.lines.append("<EOF>")
            self.arrived.notify_all()

    def expect(self, text: str) -> str:
        """The next line (after the last one expected) containing ``text``; waits for it."""
        with self.arrived:
            found = self.arrived.wait_for(lambda: self._find(text) is not None, timeout=TIMEOUT)
            assert found, f"{self.name} did not print {text!r} within {TIMEOUT}s: {self.lines}"
            index = self._find(text)
            self.cursor = index + 1
            return self.lines[index]

    def _find(self, text: str) -> int | None:
        for index in range(self.cursor, len(self.lines)):
            if text in self.lines[index]:
                return index
            if self.lines[index] == "<EOF>":
                raise AssertionError(f"{self.name} exited (rc={self.process.poll()}): {self.lines}")
        return None

    def printed(self, text: str) -> bool:
        """Whether ``text`` appeared after the last expected line (no waiting)."""
        with self.arrived:
            return any(text in line for line in self.lines[self.cursor :])

    def send(self, op: str, exclusive=(), shared=()) -> None:
        command = {"op": op, "exclusive": list(exclusive), "shared": list(shared)}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def lock(self, exclusive=(), shared=()) -> None:
        self.send("lock", exclusive, shared)

    def holds(self, exclusive=(), shared=()) -> None:
        """Take the locks, which must be free: acquired without having to wait."""
        since = self.cursor
        self.lock(exclusive, shared)
        self.expect("ACQUIRED")
        assert not any(WAITING in line for line in self.lines[since : self.cursor]), self.lines

    def release(self) -> None:
        self.send("release")
        self.expect("RELEASED")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=TIMEOUT)
        self.process.stdin.close()


@pytest.fixture
def workers(warehouse):
    """Start worker processes (in parallel) on this test's warehouse; stopped at teardown."""
    started: list[Worker] = []

    def start(*names: str) -> list[Worker]:
        new = [Worker(name) for name in names]
        started.extend(new)
        for worker in new:
            worker.expect("READY")
        return new

    yield start
    for worker in started:
        worker.stop()


def assert_waits(worker: Worker, table: str) -> None:
    """The worker logged that it waits for ``table``, and does not hold the lock."""
    line = worker.expect(WAITING)
    assert line == "LOG " + WAITING_MESSAGE.format(tables=table), line
    assert not worker.printed("ACQUIRED")


def test_exclusive_blocks_exclusive_and_shared_until_released(workers):
    first, second = workers("first", "second")
    first.holds(exclusive=["departments"])

    second.lock(exclusive=["departments"])
    assert_waits(second, "departments")
    first.release()
    assert "got the lock on departments after waiting" in second.expect("got the lock")
    second.expect("ACQUIRED")

    first.lock(shared=["departments"])  # now the other way round, and a shared request
    assert_waits(first, "departments")
    second.release()
    first.expect("got the lock on departments after waiting")
    first.expect("ACQUIRED")
    first.release()


def test_shared_locks_coexist_and_block_an_exclusive_one(workers):
    first, second, third = workers("first", "second", "third")
    first.holds(shared=["departments", "jobs"])
    second.holds(shared=["departments"])  # no waiting message: the two shared locks coexist

    third.lock(exclusive=["departments"])
    assert_waits(third, "departments")
    first.release()
    assert not third.printed("ACQUIRED")  # the second still holds its shared lock
    second.release()
    third.expect("ACQUIRED")
    third.release()


def test_locks_on_different_tables_never_block_each_other(workers):
    first, second = workers("first", "second")
    first.holds(exclusive=["departments"])
    second.holds(exclusive=["jobs"])
    second.release()
    second.holds(exclusive=["hired_employees"], shared=["jobs"])  # a load of hires, less departments
    first.release()
    second.release()


def test_a_load_of_hires_and_a_restore_of_departments_exclude_each_other(workers):
    load, restore = workers("load of hired_employees", "restore of departments")
    load.holds(exclusive=["hired_employees"], shared=["departments", "jobs"])
    restore.lock(exclusive=["departments"])
    assert_waits(restore, "departments")
    load.release()
    restore.expect("ACQUIRED")

    load.lock(exclusive=["hired_employees"], shared=["departments", "jobs"])
    assert_waits(load, "departments")  # hired_employees and jobs are free: only departments named
    restore.release()
    load.expect("ACQUIRED")
    load.release()


def test_a_killed_holder_releases_its_locks(workers):
    holder, waiter = workers("holder", "waiter")
    holder.holds(exclusive=["departments"], shared=["jobs"])
    waiter.lock(exclusive=["departments", "jobs"])
    assert_waits(waiter, "departments, jobs")
    holder.kill()  # SIGKILL: no release, no cleanup; the session or the file closes with it
    waiter.expect("ACQUIRED")
    waiter.release()


def test_locks_are_taken_in_one_order_and_exclusive_wins():
    assert lock_plan(exclusive=["jobs", "departments"], shared=["hired_employees", "jobs"]) == [
        ("departments", "exclusive"),
        ("hired_employees", "shared"),
        ("jobs", "exclusive"),
    ]
    assert lock_plan() == []
    with pytest.raises(ValueError, match="Unknown table"):
        lock_plan(exclusive=["../../etc/passwd"])
    with pytest.raises(TypeError):
        lock_plan(exclusive="departments")


def test_a_thread_asking_again_for_a_lock_it_holds_is_refused_not_deadlocked(warehouse):
    with warehouse.table_locks(exclusive=["departments"]):
        with pytest.raises(WarehouseError, match="already holds the lock on departments"):
            with warehouse.table_locks(shared=["departments"]):
                pass
        with warehouse.table_locks(exclusive=["jobs"]):  # another table: fine
            pass
    with warehouse.table_locks(exclusive=["departments"]):  # released: free again
        pass


# -- existing_keys -----------------------------------------------------------------------------


def test_existing_keys_says_which_ids_exist_now(warehouse):
    fill(warehouse, "departments", [(i, f"Department {i}") for i in range(1, 6)])
    assert warehouse.existing_keys("departments", [0, 1, 3, 5, 9, 3, -7, 2**40, 2**70]) == {1, 3, 5}
    assert warehouse.existing_keys("departments", []) == set()
    assert warehouse.existing_keys("jobs", range(1, 10_000)) == set()
    assert warehouse.existing_keys("departments", range(1, 50_000)) == {1, 2, 3, 4, 5}
    with warehouse.transaction() as connection:  # in the caller's transaction
        assert warehouse.existing_keys("departments", [2, 6], connection=connection) == {2}
    with pytest.raises(TypeError):
        warehouse.existing_keys("departments", ["1) OR (1=1"])
    with pytest.raises(ValueError, match="Unknown table"):
        warehouse.existing_keys("departments; DROP TABLE jobs", [1])


# -- a restore waits for a load's lock -----------------------------------------------------------


class MessageSeen(logging.Handler):
    def __init__(self, text: str):
        super().__init__(logging.INFO)
        self.text, self.seen, self.messages = text, threading.Event(), []

    def emit(self, record):
        self.messages.append(record.getMessage())
        if self.text in record.getMessage():
            self.seen.set()


@pytest.mark.parametrize(
    "holder_locks",
    [
        {"exclusive": ["departments"]},  # a load of departments
        {"exclusive": ["hired_employees"], "shared": ["departments", "jobs"]},  # a load of hires
    ],
    ids=["load-of-departments", "load-of-hires"],
)
def test_a_restore_waits_for_a_load_holding_the_lock_then_completes(
    warehouse, blob_store, workers, holder_locks
):
    fill(warehouse, "departments", [(i, f"Department {i}") for i in range(1, 6)])
    fill(warehouse, "jobs", [(i, f"Job {i}") for i in range(1, 4)])
    fill(warehouse, "hired_employees", [(1, "Ann", datetime(2021, 1, 1), 2, 1)])
    backup_logic.backup_table("departments", warehouse, blob_store)
    backed_up = table_rows(warehouse, "departments")
    fill(warehouse, "departments", [(3, "Renamed"), (6, "New")])
    changed = table_rows(warehouse, "departments")

    (holder,) = workers("load")
    holder.holds(**holder_locks)

    watch = MessageSeen(WAITING)
    logger = logging.getLogger("hr_pipeline.warehouse.facade")
    logger.addHandler(watch)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    outcome: queue.Queue = queue.Queue()

    def run_restore():
        try:
            outcome.put(restore_logic.restore_table("departments", "latest", None, warehouse, blob_store))
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            outcome.put(error)

    restore = threading.Thread(target=run_restore, name="restore", daemon=True)
    try:
        restore.start()
        assert watch.seen.wait(TIMEOUT), f"the restore never said it waits: {watch.messages}"
        assert any(
            m.startswith("waiting for the lock on departments (a load or restore of it")
            for m in watch.messages
        ), watch.messages
        assert restore.is_alive()
        assert outcome.empty()
        assert table_rows(warehouse, "departments") == changed  # nothing replaced while it waits
        holder.release()
        restore.join(TIMEOUT)
        assert not restore.is_alive(), "the restore did not finish after the lock was released"
    finally:
        logger.removeHandler(watch)
        logger.setLevel(previous_level)
    result = outcome.get_nowait()
    assert not isinstance(result, BaseException), result
    assert result.rows == len(backed_up)
    assert result.rows_before == len(changed)
    assert table_rows(warehouse, "departments") == backed_up
    assert any("got the lock on departments after waiting" in m for m in watch.messages)
    # and the restore released its locks: the load can take them again, without waiting
    holder.holds(**holder_locks)
    holder.release()
