"""Runs of one table that overlap, on the real local stack (scheduler, LocalExecutor, Azurite,
PostgreSQL): two files with overlapping ids wait, two ingest_table runs of the table are
triggered at once, and the outcome is the one a single run in file order gives: every file
loaded exactly once, the later file's rows win, and no lock or claimed file is left behind.

A run that finds its files already taken by the other waits for the lock, then finds nothing of
its own and ends. A manual run and landing-triggered runs racing for one file: the file is loaded
once, a second manual run joins the one already waiting, and no run is left waiting.
"""

from __future__ import annotations

import csv
import time

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]

FIRST_IDS = range(1001, 1101)
SECOND_IDS = range(1051, 1151)  # ids 1051-1100 are in both files
FILES = ("incoming/jobs/overlap-a.csv", "incoming/jobs/overlap-b.csv")
WAITING_STATES = {"deferred", "running", "queued", "scheduled", "up_for_reschedule", None}


def write_jobs(path, ids, label: str):
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([i, f"{label} {i}"] for i in ids)
    return path


def ledger_rows(stack) -> list[tuple]:
    return stack.sql(
        "SELECT file, status, loaded, rejected, run_id FROM ingest_files WHERE file LIKE %s ORDER BY file",
        ("incoming/jobs/overlap-%",),
    )


def settled(api, run_id: str) -> str | None:
    """'success' or 'failed' once the run ended; 'waiting' while its only unfinished task is the
    sensor waiting for new files (its files were taken by the other run); None otherwise."""
    run = api.run("ingest_table", run_id)
    if run["state"] in ("success", "failed"):
        return run["state"]
    states = {ti["task_id"]: ti["state"] for ti in api.task_instances("ingest_table", run_id)}
    if states.get("wait_for_files") in WAITING_STATES - {None} and all(
        state is None for task, state in states.items() if task != "wait_for_files"
    ):
        return "waiting"
    return None


def test_two_runs_of_one_table_load_each_file_once_in_file_order(local_stack, published, tmp_path):
    api = local_stack.api
    api.json("PATCH", "/api/v2/dags/ingest_on_landing", json={"is_paused": True})  # only our runs
    local_stack.upload_extract("jobs", write_jobs(tmp_path / "a.csv", FIRST_IDS, "first"), "overlap-a.csv")
    local_stack.upload_extract("jobs", write_jobs(tmp_path / "b.csv", SECOND_IDS, "second"), "overlap-b.csv")

    started = time.monotonic()
    run_ids = [api.trigger_run("ingest_table", {"table_name": "jobs"}) for _ in range(2)]
    try:
        outcomes = wait_until_settled(local_stack, run_ids)
        print(f"[stack] two overlapping runs of jobs: {outcomes}, {time.monotonic() - started:.1f} s")
        assert "failed" not in outcomes.values(), [api.failure_report("ingest_table", r) for r in run_ids]
        assert "success" in outcomes.values(), outcomes
        check_each_file_loaded_once_in_order(local_stack, run_ids)
    finally:  # the later stack tests count the jobs rows and upload jobs files of their own
        for run_id in run_ids:
            if settled(api, run_id) == "waiting":  # nothing left for it: stop it, as an operator would
                api.json("PATCH", f"/api/v2/dags/ingest_table/dagRuns/{run_id}", json={"state": "failed"})
        local_stack.sql("DELETE FROM jobs WHERE id > 1000")


def wait_until_settled(stack, run_ids: list[str], timeout: float = 600) -> dict[str, str | None]:
    """Each run's outcome (see ``settled``) once both files are in the ledger."""
    deadline = time.monotonic() + timeout
    outcomes: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        outcomes = {run_id: settled(stack.api, run_id) for run_id in run_ids}
        if len(ledger_rows(stack)) == 2 and None not in outcomes.values():
            return outcomes
        time.sleep(2)
    pytest.fail(f"the runs did not settle within {timeout:.0f} s: {outcomes}; ledger {ledger_rows(stack)}")


def check_each_file_loaded_once_in_order(local_stack, run_ids: list[str]) -> None:
    expected = {i: f"first {i}" for i in FIRST_IDS}
    expected.update({i: f"second {i}" for i in SECOND_IDS})
    assert dict(local_stack.sql("SELECT id, job FROM jobs WHERE id > 1000")) == expected
    ledger = ledger_rows(local_stack)
    assert [row[:4] for row in ledger] == [(file, "loaded", 100, 0) for file in FILES]
    assert {row[4] for row in ledger} <= set(run_ids)

    raw = "AZURE_BLOB_CONTAINER_RAW_DATA"
    assert [name for name in local_stack.blob_names(raw, "incoming/jobs/") if "overlap" in name] == []
    assert [name for name in local_stack.blob_names(raw, "processing/jobs/") if "overlap" in name] == []
    assert local_stack.blob_names(raw, "processing/locks/jobs.lock") == []  # the ingest lock released
    assert len([name for name in local_stack.blob_names(raw, "archive/jobs/") if "overlap" in name]) == 2


def sensor_state(api, run_id: str) -> str | None:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances("ingest_table", run_id)}.get(
        "wait_for_files"
    )


def recent_runs(api) -> list[dict]:
    return api.json(
        "GET", "/api/v2/dags/ingest_table/dagRuns", params={"order_by": "-run_after", "limit": 50}
    )["dag_runs"]


def wait_for(condition, what: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def test_a_manual_run_and_a_landing_run_race_for_one_file_and_no_run_is_left_waiting(
    local_stack, published, tmp_path
):
    api = local_stack.api
    raced = "incoming/jobs/race.csv"
    earlier = {run["dag_run_id"] for run in recent_runs(api)}  # other tests' runs are not this race's
    api.json("PATCH", "/api/v2/dags/ingest_on_landing", json={"is_paused": False})
    try:
        waiting = api.trigger_run("ingest_table", {"table_name": "jobs", "wait_minutes": 30})
        wait_for(lambda: sensor_state(api, waiting) == "deferred", "the manual run waits in the triggerer")

        joining = api.trigger_run("ingest_table", {"table_name": "jobs", "wait_minutes": 30})
        joined = api.wait_for_run("ingest_table", joining, timeout=600)
        assert sensor_state(api, joining) == "skipped", api.failure_report("ingest_table", joining)
        assert joined["state"] == "success"
        log_text = api.task_log("ingest_table", joining, "wait_for_files", 1)
        assert f"Run {waiting} is already waiting for files of jobs" in log_text, log_text[-2000:]

        local_stack.upload_extract(
            "jobs", write_jobs(tmp_path / "race.csv", range(2001, 2051), "race"), "race.csv"
        )
        ledger = wait_for(
            lambda: local_stack.sql("SELECT run_id, loaded FROM ingest_files WHERE file = %s", (raced,)),
            "the raced file in the ledger",
        )
        assert [row[1] for row in ledger] == [50], ledger  # loaded once, by one run
        assert api.wait_for_run("ingest_table", waiting, timeout=600)["state"] == "success"

        def every_jobs_run_ended():
            runs = recent_runs(api)
            mine = [
                r for r in runs if r["conf"].get("table_name") == "jobs" and r["dag_run_id"] not in earlier
            ]
            return all(r["state"] in ("success", "failed") for r in mine) and mine

        runs = wait_for(every_jobs_run_ended, "every run of jobs ended")
        assert all(run["state"] == "success" for run in runs), runs
        assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "processing/waiting/") == []
        assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "processing/locks/") == []
    finally:
        api.json("PATCH", "/api/v2/dags/ingest_on_landing", json={"is_paused": True})
        local_stack.sql("DELETE FROM jobs WHERE id > 2000")
