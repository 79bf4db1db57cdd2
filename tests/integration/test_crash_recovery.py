"""A run of ingest_table SIGKILLed at every step boundary loses nothing: the retry of the killed
step, or the next run of the table taking the lock over, converges to the same end - every valid
row in the table, each file archived once, every rejected row kept with its reason, exactly one
ledger row per file, nothing left under incoming/ or processing/.

The kill is real: the step runs in a child process (``crash_runner``) that SIGKILLs itself when
the pipeline logs the line that ends the step before the boundary.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hr_pipeline.ingest.archive import archive_ingested
from hr_pipeline.ingest.load import load_validated
from hr_pipeline.ingest.validate import validate_incoming
from tests.conftest import PROJECT_ROOT
from tests.integration.ingest_helpers import blob_names, drop_file, raw_container, read_rejects

DAY = "2026-03-04"
FILES = {
    "a.csv": "1,Nurse\n2,Cook\nx,Bad id\n3,Driver\n",
    "b.csv": "4,Pilot\n5,\n6,Chef\n",
}
EXPECTED_JOBS = {1: "Nurse", 2: "Cook", 3: "Driver", 4: "Pilot", 6: "Chef"}
EXPECTED_LEDGER = {"incoming/jobs/a.csv": (3, 1), "incoming/jobs/b.csv": (2, 1)}  # loaded, rejected
EXPECTED_REASONS = {  # each file's one rejected row
    "incoming/jobs/a.csv": "row 3: id: 'x' is not an integer",
    "incoming/jobs/b.csv": "row 2: job: required field is empty",
}

# (step, the log line it is killed at, which occurrence): every boundary between two of its steps.
KILL_POINTS = [
    ("validate", r"file\(s\) to ingest for jobs", 1),  # files claimed, nothing validated
    ("validate", r"valid rows handed over", 1),  # first file's hand-over written
    ("validate", r"valid rows handed over", 2),
    ("load", r"rows loaded$", 1),  # one batch committed
    ("load", r"to archive/journal/", 1),  # the first file's rows archived, its journal row not written
    ("load", r"journal \d+ of jobs", 1),  # the first file journaled
    ("load", r"rows loaded into jobs", 1),  # the first file loaded, the second not
    ("load", r"rows loaded into jobs", 2),  # loaded, result not handed on
    ("archive", r"archive manifest of run", 1),
    ("archive", r": moved to archive/", 1),  # the file archived, its rejects not
    ("archive", r"rejects moved to", 1),
    ("archive", r"hand-over files removed", 1),
    ("archive", r"hand-over files removed", 2),
    ("archive", r"ledger row\(s\) of run", 1),
    ("archive", r"archive of run .* complete", 1),
]
STEPS = ("validate", "load", "archive")


def run_step(step: str, run_id: str, state: dict) -> dict:
    if step == "validate":
        return {**state, "validations": validate_incoming("jobs", run_id=run_id, day=DAY)}
    if step == "load":
        return {**state, "loads": load_validated("jobs", state["validations"], batch_size=1)}
    archive_ingested("jobs", state["validations"], day=DAY, run_id=run_id, loads=state["loads"])
    return state


def killed_at(step: str, pattern: str, occurrence: int, state: dict, tmp_path) -> None:
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))
    child = subprocess.run(
        [sys.executable, "-m", "tests.integration.crash_runner", step, "jobs", "run-a", DAY]
        + [str(state_path), pattern, str(occurrence)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -9, (
        f"not killed at {pattern!r} (exit {child.returncode}): {child.stderr[-3000:]}"
    )


def ledger_rows(warehouse) -> list[tuple]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT file, run_id, loaded, rejected, archived_as, rejects_file FROM ingest_files")
        return sorted(cursor.fetchall())


def assert_nothing_lost(blob_store, warehouse) -> None:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        assert dict(cursor.fetchall()) == EXPECTED_JOBS
    rows = ledger_rows(warehouse)
    assert [row[0] for row in rows] == sorted(EXPECTED_LEDGER), "exactly one ledger row per file"
    for file, _run, loaded, rejected, archived_as, rejects_file in rows:
        assert (loaded, rejected) == EXPECTED_LEDGER[file], file
        name = file.rsplit("/", 1)[-1]
        assert blob_store.download_bytes(raw_container(), archived_as) == FILES[name].encode(), file
        rejects = read_rejects(blob_store, rejects_file)
        assert len(rejects) == 1, f"{file}: its rejected row and reason are kept"
        assert rejects[0]["reason"] == EXPECTED_REASONS[file], file
    archived = blob_names(blob_store, "archive/jobs/")
    assert sorted(n.rsplit("/", 1)[-1] for n in archived) == sorted(FILES), "each file archived once"
    assert blob_names(blob_store, "incoming/") == []
    assert blob_names(blob_store, "processing/") == []
    assert journal_replayed(blob_store, warehouse) == EXPECTED_JOBS, "the journal holds every load"


def journal_replayed(blob_store, warehouse) -> dict[int, str]:
    """The table rebuilt from nothing by the journal alone: each load's rows file, checked against
    its sha256 and count, upserted in order (what a point-in-time restore replays)."""
    import csv
    import io

    from hr_pipeline.backup.point_in_time import checked_batches
    from hr_pipeline.warehouse import journal
    from hr_pipeline.warehouse.facade import csv_batches

    table: dict[int, str] = {}
    for entry in journal.entries(warehouse, "jobs"):
        assert entry.kind == journal.LOAD
        blocks = blob_store.decompressed_blocks(
            raw_container(), entry.rows_file, journal.ROWS_FILE_COMPRESSION
        )
        for batch in checked_batches(entry, csv_batches(blocks, 2), raw_container()):
            table.update((int(key), job) for key, job in csv.reader(io.StringIO(batch.text)))
    return table


@pytest.mark.slow
@pytest.mark.parametrize("recovery", ["retry", "takeover"])
@pytest.mark.parametrize(("step", "pattern", "occurrence"), KILL_POINTS)
def test_a_run_killed_between_steps_converges(
    blob_store, sqlite_warehouse, tmp_path, step, pattern, occurrence, recovery
):
    for name, text in FILES.items():
        drop_file(blob_store, "jobs", text, name)
    state: dict = {}
    for earlier in STEPS[: STEPS.index(step)]:
        state = run_step(earlier, "run-a", state)

    killed_at(step, pattern, occurrence, state, tmp_path)

    if recovery == "retry":  # Airflow retries the killed task, then runs the ones after it
        for later in STEPS[STEPS.index(step) :]:
            state = run_step(later, "run-a", state)
    else:  # run-a is failed for good; the table's next run takes its lock over
        validations = validate_incoming(
            "jobs", run_id="run-b", day=DAY, run_has_ended=lambda run_id: run_id == "run-a"
        )
        loads = load_validated("jobs", validations, batch_size=1)
        archive_ingested("jobs", validations, day=DAY, run_id="run-b", loads=loads)
    assert_nothing_lost(blob_store, sqlite_warehouse)


def test_a_killed_archive_is_finished_by_the_next_run_in_the_name_of_the_run_that_loaded(
    blob_store, postgres_warehouse, tmp_path
):
    """On PostgreSQL too; the ledger rows name run-a, whose load committed the rows."""
    for name, text in FILES.items():
        drop_file(blob_store, "jobs", text, name)
    state = run_step("load", "run-a", run_step("validate", "run-a", {}))
    killed_at("archive", r": moved to archive/", 1, state, tmp_path)

    assert validate_incoming("jobs", run_id="run-b", day=DAY, run_has_ended=lambda run_id: True) == []

    assert {row[1] for row in ledger_rows(postgres_warehouse)} == {"run-a"}
    assert_nothing_lost(blob_store, postgres_warehouse)
