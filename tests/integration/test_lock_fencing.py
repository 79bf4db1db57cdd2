"""The ingest lock is fenced: taken over only when Airflow says its holder ended, and a run that
lost it commits nothing; two writers of one table never run at once in the warehouse; a run with
nothing to wait for ends; files stranded by an ended run are adopted by the next."""

from __future__ import annotations

import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from hr_pipeline.ingest.archive import archive_ingested
from hr_pipeline.ingest.load import load_validated
from hr_pipeline.ingest.validate import validate_incoming
from hr_pipeline.ops.run_states import RunStateUnknown
from hr_pipeline.ops.sensors import IncomingFilesSensor
from hr_pipeline.storage.claims import IngestLockTimeout, LockLostError, stranded_claims
from hr_pipeline.storage.layout import lock_name, waiting_marker_name
from tests.integration.ingest_helpers import (
    blob_names,
    drop_file,
    raw_container,
    run_ingest,
    task_states,
)

DAY = "2026-05-06"


def jobs(warehouse) -> dict[int, str]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        return dict(cursor.fetchall())


def unreadable_state(run_id: str) -> bool:
    raise RunStateUnknown(f"the state of run {run_id} could not be read (API server unreachable)")


def test_a_holder_whose_state_cannot_be_read_is_never_taken_over(blob_store, sqlite_warehouse, monkeypatch):
    drop_file(blob_store, "jobs", "1,First\n", "a.csv")
    validate_incoming("jobs", run_id="run-a", day=DAY)  # holds the lock, still working
    drop_file(blob_store, "jobs", "1,Second\n", "b.csv")
    monkeypatch.setenv("HR_INGEST_LOCK_TIMEOUT_SECONDS", "1")

    with pytest.raises(IngestLockTimeout) as refused:
        validate_incoming("jobs", run_id="run-b", day=DAY, run_has_ended=unreadable_state)

    message = str(refused.value)
    assert "run-a holds the ingest lock" in message
    assert "its state could not be read" in message
    assert "API server unreachable" in message
    holder = blob_store.properties(raw_container(), lock_name("jobs")).metadata["hr_run_id"]
    assert holder == "run-a"
    assert blob_names(blob_store, "incoming/jobs/") == ["incoming/jobs/b.csv"]  # not claimed


def test_a_run_that_lost_its_lock_commits_nothing_and_the_newer_file_wins(blob_store, warehouse):
    """The race of a doubted lock: run-b takes over run-a while run-a still works. run-a's load
    and archive are refused; run-b loads run-a's file, then its own newer one, in order."""
    drop_file(blob_store, "jobs", "1,A\n2,A\n", "a.csv")
    stale = validate_incoming("jobs", run_id="run-a", day=DAY)
    drop_file(blob_store, "jobs", "1,B\n2,B\n", "b.csv")
    taking_over = validate_incoming("jobs", run_id="run-b", day=DAY, run_has_ended=lambda run_id: True)
    loads = load_validated("jobs", taking_over, batch_size=1)
    archive_ingested("jobs", taking_over, day=DAY, run_id="run-b", loads=loads)

    with pytest.raises(LockLostError, match="run run-a no longer holds the ingest lock"):
        load_validated("jobs", stale, batch_size=1)
    with pytest.raises(LockLostError):
        archive_ingested("jobs", stale, day=DAY, run_id="run-a", loads=[])

    assert jobs(warehouse) == {1: "B", 2: "B"}
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT file, run_id FROM ingest_files ORDER BY file")
        assert cursor.fetchall() == [("incoming/jobs/a.csv", "run-b"), ("incoming/jobs/b.csv", "run-b")]


def test_two_writers_of_one_table_take_turns_in_the_warehouse(warehouse):
    events: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with warehouse.table_locks(writers=["jobs"], shared=["jobs"]):
            events.append("first holds")
            first_holds.set()
            time.sleep(0.5)
            events.append("first releases")

    def second() -> None:
        first_holds.wait(60)
        with warehouse.table_locks(writers=["jobs"], shared=["jobs"]):
            events.append("second holds")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert events == ["first holds", "first releases", "second holds"]


def test_a_writer_of_one_table_does_not_hold_up_another_table(warehouse):
    with warehouse.table_locks(writers=["hired_employees"], shared=["hired_employees", "jobs"]):
        done = threading.Event()

        def load_jobs() -> None:
            with warehouse.table_locks(writers=["jobs"], shared=["jobs"]):
                done.set()

        thread = threading.Thread(target=load_jobs)
        thread.start()
        thread.join(60)
        assert done.is_set()


class _RunStates:
    """The task instance's view of other runs' states (the Task SDK asks Airflow's API server,
    which dag.test cannot host for a run that is not its own)."""

    def __init__(self, states: dict[str, str]):
        self.states = states

    def get_dagrun_state(self, dag_id: str, run_id: str) -> str:
        return self.states[run_id]

    def get_dr_count(self, dag_id: str, run_ids: list[str]) -> int:
        return sum(run_id in self.states for run_id in run_ids)


class _Dag:
    dag_id = "ingest_table"


def sensor_context(run_id: str, states: dict[str, str], conf: dict | None = None) -> dict:
    class _DagRun:
        pass

    dag_run = _DagRun()
    dag_run.conf = conf or {}
    return {"ti": _RunStates(states), "dag": _Dag(), "run_id": run_id, "dag_run": dag_run}


def sensor(wait_minutes: float) -> IncomingFilesSensor:
    return IncomingFilesSensor(
        task_id="wait_for_files",
        container_name=raw_container(),
        table_name="jobs",
        wasb_conn_id="azure_blob",
        wait_minutes=wait_minutes,
    )


def test_a_second_run_with_nothing_waiting_joins_the_run_already_waiting(blob_store):
    waiting = sensor(10)
    assert waiting._take_waiting_place(sensor_context("run-1", {"run-1": "running"})) is None

    with pytest.raises(AirflowSkipException, match="Run run-1 is already waiting for files of jobs"):
        sensor(10).execute(sensor_context("run-2", {"run-1": "running", "run-2": "running"}))

    waiting._leave_waiting_place(sensor_context("run-1", {}))
    assert blob_names(blob_store, waiting_marker_name("jobs")) == []


def test_files_that_land_while_a_run_waits_are_left_to_the_waiting_run(blob_store):
    assert sensor(10)._take_waiting_place(sensor_context("run-1", {"run-1": "running"})) is None
    drop_file(blob_store, "jobs", "1,Nurse\n", "a.csv")
    states = {"run-1": "running", "landing-run": "running"}

    with pytest.raises(AirflowSkipException, match="Run run-1 is waiting for files of jobs"):
        sensor(0).execute(sensor_context("landing-run", states))
    assert blob_names(blob_store, "incoming/") == ["incoming/jobs/a.csv"]  # still there for run-1

    states["run-1"] = "failed"  # the waiting run ended without them: the next run takes them
    assert sensor(0).execute(sensor_context("landing-run", states)) is None


def test_a_waiting_place_left_by_an_ended_run_is_taken(blob_store):
    assert sensor(10)._take_waiting_place(sensor_context("run-1", {"run-1": "running"})) is None
    assert sensor(10)._take_waiting_place(sensor_context("run-2", {"run-1": "failed"})) is None
    marker = blob_store.properties(raw_container(), waiting_marker_name("jobs"))
    assert marker.metadata["hr_run_id"] == "run-2"


def test_a_landing_run_whose_files_were_taken_ends_naming_the_run_that_took_them(
    blob_store, sqlite_warehouse
):
    drop_file(blob_store, "jobs", "1,Nurse\n", "a.csv")
    validate_incoming("jobs", run_id="manual-run", day=DAY)  # took the file that landed
    context = sensor_context(
        "landing-run", {"manual-run": "running"}, conf={"landed_files": ["incoming/jobs/a.csv"]}
    )
    with pytest.raises(AirflowSkipException) as skipped:
        sensor(0).execute(context)
    assert "run manual-run, which holds the table's ingest lock, took them" in str(skipped.value)
    assert "started for 1 file(s) that landed" in str(skipped.value)


def test_files_of_an_ended_run_count_as_waiting_unless_it_is_in_progress(blob_store, sqlite_warehouse):
    drop_file(blob_store, "jobs", "1,Nurse\n", "a.csv")
    validate_incoming("jobs", run_id="dead-run", day=DAY)
    container = raw_container()
    assert stranded_claims(blob_store, container, "jobs", lambda run_id: False) == []
    assert stranded_claims(blob_store, container, "jobs", unreadable_state) == []
    stranded = stranded_claims(blob_store, container, "jobs", lambda run_id: True)
    assert stranded == ["processing/jobs/dead-run/claimed/a.csv"]


@pytest.mark.slow
def test_a_run_with_nothing_to_wait_for_ends_at_once(airflow_db, blob_store, sqlite_warehouse):
    run = run_ingest("jobs", wait_minutes=0)
    states = task_states(run)
    assert states["wait_for_files"] == "skipped"
    assert {states[task] for task in ("validate", "load", "archive")} == {"skipped"}
    assert blob_names(blob_store, "processing/") == []


@pytest.mark.slow
def test_files_stranded_by_a_run_airflow_no_longer_has_are_ingested_by_the_next_run(
    airflow_db, blob_store, sqlite_warehouse
):
    """A run that claimed a file and was deleted: the next run's sensor counts the file as
    waiting (nothing is under incoming/), and the run adopts and ingests it."""
    drop_file(blob_store, "jobs", "7,Welder\n", "stranded.csv")
    validate_incoming("jobs", run_id="deleted-run", day=DAY)
    assert blob_names(blob_store, "incoming/") == []

    run = run_ingest("jobs", wait_minutes=0)

    assert set(task_states(run).values()) == {"success"}
    assert jobs(sqlite_warehouse) == {7: "Welder"}
    assert blob_names(blob_store, "processing/") == []
    assert len(blob_names(blob_store, "archive/jobs/")) == 1
