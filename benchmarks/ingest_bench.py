"""Ingest: validate + load of a generated hired_employees extract on PostgreSQL, against
`psql \\copy` of the same file into the same table shape (the floor: no validation, no upsert).

Run at 1,000,000 rows at the DAG's default batch of 1,000 rows per transaction (target: within
2.0x the copy), at batch 100,000 (for scale), and at 5,000,000 rows, batch 100,000 (within 1.6x).
Peak memory of each task under 400 MB, there and on two files whose size is in the width of their
rows: 515 MB of wide rows, and 1 GiB that is one line (rejected whole).

Validate and load run in two processes, as the DAG's two tasks do, from the blob in Azurite to
the rows in PostgreSQL, each forked from a forkserver that imported ``hr_pipeline.ops.preload``
(as the local stack's LocalExecutor workers are): the peak memory is each process's peak RSS.
Each task's start-up, from its process's start to its first line of work (imports, Airflow's
first connection lookup, the clients), is a figure of its own (target: under 1 s), apart from
the work's time.

Each run is repeated (``HR_BENCH_INGEST_ROUNDS``, 3 by default), the baseline and the project in
turn, each round in a fresh database: the figures are the medians, printed with their spreads,
and each peak memory is the highest of the rounds.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    WORK_DIR,
    dimension_rows,
    fresh_postgres_database,
    generate_hires_csv,
    measure_in_child,
    median_seconds,
    postgres_dsn,
    report,
    report_limit,
    spread,
    time_command,
    use_postgres_warehouse,
    warm_forkserver,
)
from hr_pipeline.runtime.settings import load_connections

ROOT = Path(__file__).resolve().parents[1]
# (rows, batch) -> target ratio to the copy; a run without one is shown for scale.
TARGET_RATIOS = {(1_000_000, 1000): 2.0, (5_000_000, 100_000): 1.6}
MEMORY_LIMIT_MB = 400
START_UP_LIMIT_SECONDS = 1.0
# HR_BENCH_INGEST_MEMORY=0 leaves out the runs of a wide-row file and a one-line file.
MEMORY_RUNS = os.environ.get("HR_BENCH_INGEST_MEMORY", "1") != "0"
# (rows, load batch size): the DAG's default batch of 1,000 rows per transaction, then larger
# batches, which is what a bulk load should be triggered with (the figure the target is read on).
RUNS = tuple(
    tuple(int(x) for x in run.split(":"))
    for run in os.environ.get("HR_BENCH_INGEST_RUNS", "1000000:1000,1000000:100000,5000000:100000").split(",")
)
# A single pair of baseline and project moves by half its value between minutes on a shared
# machine: each run is repeated, the figures are medians (see the module's docstring).
ROUNDS = int(os.environ.get("HR_BENCH_INGEST_ROUNDS", "3"))


def _start_azurite() -> tuple[int, Path]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = WORK_DIR / "azurite-ingest"
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "azurite.sh"), "start", str(data_dir), str(port)],
        check=True,
        capture_output=True,
    )
    return port, data_dir


def _task_start_up(database: str, blob_env: str, validating: bool) -> float:
    """What a task process does before the task's own code runs, paid once per task whatever the
    file's size: the imports the forkserver did not do, Airflow's first connection lookup (which
    loads its configuration and secrets backends, as a worker's task runner does first), and the
    clients made from the connections. Returns the process's age then: its start-up."""
    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    use_postgres_warehouse(database)
    if validating:
        import great_expectations  # noqa: F401
        import pyarrow.compute  # noqa: F401
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook  # noqa: F401
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
    from airflow.sdk import BaseHook

    import hr_pipeline.ingest.archive
    import hr_pipeline.ingest.load
    import hr_pipeline.ingest.validate  # noqa: F401
    from hr_pipeline.runtime.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID
    from hr_pipeline.runtime.startup import process_age_seconds

    for conn_id in (BLOB_CONN_ID, WAREHOUSE_CONN_ID):
        BaseHook.get_connection(conn_id)
    from hr_pipeline.storage.blob_store import BlobStore
    from hr_pipeline.warehouse.facade import Warehouse

    BlobStore(), Warehouse()
    return process_age_seconds()


def _validate_task(database: str, blob_env: str) -> dict:
    """In a child process, as in ingest_table's validate task."""
    import time

    start_up = _task_start_up(database, blob_env, validating=True)
    from hr_pipeline.ingest.validate import validate_incoming

    started = time.perf_counter()
    run_id = f"bench-{os.getpid()}"  # each timed run is its own ingest_table run
    validations = validate_incoming("hired_employees", run_id=run_id, day="2021-01-01")
    return {"validations": validations, "seconds": time.perf_counter() - started, "start_up": start_up}


def _load_task(database: str, blob_env: str, validations: list[dict], batch_size: int) -> dict:
    """In another child process, as in ingest_table's load task."""
    import time

    start_up = _task_start_up(database, blob_env, validating=False)
    from hr_pipeline.ingest.archive import archive_ingested
    from hr_pipeline.ingest.load import load_validated

    started = time.perf_counter()
    loads = load_validated("hired_employees", validations, batch_size=batch_size)
    seconds = time.perf_counter() - started
    archive_ingested("hired_employees", validations, day="2021-01-01")  # not timed: releases the lock
    return {
        "loaded": sum(load["loaded"] for load in loads),
        "seconds": seconds,
        "start_up": start_up,
    }


def _checkpoint(database: str) -> None:
    """A PostgreSQL checkpoint before each timed write, so that neither the baseline's COPY nor
    the load starts with the other's WAL still to flush (5M rows write about 1 GB of it, the
    server's max_wal_size: a checkpoint would otherwise fall inside whichever comes second)."""
    import psycopg

    with psycopg.connect(postgres_dsn(database), autocommit=True) as connection:
        connection.execute("CHECKPOINT")


def _prepare_warehouse(database: str) -> None:
    import psycopg

    use_postgres_warehouse(database)
    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.warehouse.dialects import POSTGRES
    from hr_pipeline.warehouse.facade import Warehouse

    Warehouse().ensure_tables()
    with psycopg.connect(postgres_dsn(database)) as connection:
        for table, label, count in (("departments", "Department", 12), ("jobs", "Job", 183)):
            with connection.cursor().copy(f"COPY {table} (id, {table[:-1]}) FROM STDIN") as copy:
                for row in dimension_rows(count, label):
                    copy.write_row(row)
        connection.execute(POSTGRES.create_table(CONTRACTS["hired_employees"], "copy_baseline"))


def _bare_batched_copies(database: str, extract: Path, batch_size: int) -> float:
    """Seconds to COPY ``extract`` into an empty table of the same shape in transactions of
    ``batch_size`` rows (each committed asynchronously, as the load's), on as many connections as
    the load writes through: the floor of a load at that batch size, without the download, the
    hand-over file or the journal."""
    import threading

    import psycopg

    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.warehouse.dialects import POSTGRES

    with psycopg.connect(postgres_dsn(database), autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS copy_batched")
        connection.execute(POSTGRES.create_table(CONTRACTS["hired_employees"], "copy_batched"))
    lines = extract.read_bytes().splitlines(keepends=True)  # generated rows: no quoted newline
    batches = [b"".join(lines[i : i + batch_size]) for i in range(0, len(lines), batch_size)]
    del lines
    writers = load_connections()

    def write(mine: list[bytes]) -> None:
        with psycopg.connect(postgres_dsn(database)) as connection:
            connection.execute("SET synchronous_commit = off")
            connection.commit()
            for batch in mine:
                with connection.cursor().copy("COPY copy_batched FROM STDIN (FORMAT csv)") as copy:
                    copy.write(batch)
                connection.commit()

    threads = [threading.Thread(target=write, args=(batches[k::writers],)) for k in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


@dataclass
class _Round:
    """One interleaved round of a run: the baseline, the two tasks, the load's bare-COPY floor."""

    baseline: float
    validate: Any  # measure_in_child's result
    load: Any
    floor: float | None


def _one_round(rows: int, batch_size: int, extract: Path, blob_env: str) -> _Round:
    """``psql \\copy`` of ``extract``, then validate and load of the same file from Azurite, then
    the load's bare-COPY floor, each into a fresh database and after a checkpoint."""
    from hr_pipeline.storage.blob_store import BlobStore

    with fresh_postgres_database() as database:
        _prepare_warehouse(database)
        _checkpoint(database)
        baseline = time_command(
            [
                "psql",
                postgres_dsn(database),
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"\\copy copy_baseline FROM '{extract}' WITH (FORMAT csv)",
            ]
        )
        store = BlobStore()
        store.upload_file("raw-data", "incoming/hired_employees/bench.csv", extract)
        # Two processes, as the DAG's two tasks are: each one's peak memory is its own.
        validate = measure_in_child(_validate_task, database, blob_env, start_method="forkserver")
        validations = validate.result["validations"]
        _checkpoint(database)
        load = measure_in_child(
            _load_task, database, blob_env, validations, batch_size, start_method="forkserver"
        )
        assert not store.exists("raw-data", "incoming/hired_employees/bench.csv")  # claimed, archived
        assert sum(v["valid"] for v in validations) == rows, validations
        assert load.result["loaded"] == rows, load.result
        floor = None
        if batch_size < rows:
            _checkpoint(database)
            floor = _bare_batched_copies(database, extract, batch_size)
    print(
        f"  round: psql {baseline:.2f} s; validate {validate.result['seconds']:.2f} s, peak"
        f" {validate.peak_rss_mb:.0f} MB, start-up {validate.result['start_up']:.2f} s; load"
        f" {load.result['seconds']:.2f} s, peak {load.peak_rss_mb:.0f} MB, start-up"
        f" {load.result['start_up']:.2f} s" + (f"; bare COPYs {floor:.2f} s" if floor is not None else ""),
        flush=True,
    )
    return _Round(baseline, validate, load, floor)


def _work_seconds(round_: _Round) -> float:
    return round_.validate.result["seconds"] + round_.load.result["seconds"]


def _report_run(rows: int, batch_size: int, rounds: list[_Round], first_run: bool) -> bool:
    """The run's figures: medians over its rounds (spreads in the name), the peaks the highest."""
    name = f"ingest {rows // 1_000_000}M rows, batch {batch_size:,}"
    of_rounds = f"median of {len(rounds)}" if len(rounds) > 1 else "one round"
    works = [_work_seconds(r) for r in rounds]
    baselines = [r.baseline for r in rounds]
    met = report(
        f"{name}: validate + load, {of_rounds} (project {spread(works)}, psql {spread(baselines)})",
        median_seconds(works),
        "psql \\copy",
        median_seconds(baselines),
        TARGET_RATIOS.get((rows, batch_size)),
    )
    for task in ("validate", "load"):
        peak = max(getattr(r, task).peak_rss_mb for r in rounds)
        met &= report_limit(
            f"{name}: {task} peak memory, highest of {len(rounds)}", peak, "MB", MEMORY_LIMIT_MB
        )
    if rounds[0].floor is not None:
        loads = [r.load.result["seconds"] for r in rounds]
        report(
            f"{name}: the load alone, for scale, {of_rounds}",
            median_seconds(loads),
            f"bare COPYs of {batch_size:,} rows, one transaction each, {load_connections()} connections",
            median_seconds(r.floor for r in rounds),
        )
    if first_run:
        for task in ("validate", "load"):
            met &= report_limit(
                f"task start-up: {task} (process start to first line of work), {of_rounds}",
                median_seconds(getattr(r, task).result["start_up"] for r in rounds),
                "s",
                START_UP_LIMIT_SECONDS,
                decimals=2,
            )
    return met


def _wide_rows_file(path: Path, megabytes: int) -> Path:
    """``megabytes`` of valid hired_employees rows whose names have the contract's 255 characters
    at most (about 300 bytes a row, five times the generated extract's)."""
    if path.exists() and path.stat().st_size >= megabytes << 20:
        return path
    with open(path, "w") as handle:
        row_id = 0
        while handle.tell() < megabytes << 20:
            row_id += 1
            name = f"Employee {row_id} " + "w" * 230
            handle.write(f"{row_id},{name},2021-03-04T05:06:07Z,{row_id % 12 + 1},{row_id % 183 + 1}\n")
    return path


def _one_line_file(path: Path, megabytes: int) -> Path:
    """``megabytes`` without a line end: a broken file, rejected whole."""
    if path.exists() and path.stat().st_size == megabytes << 20:
        return path
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(b"x" * (1 << 20))
    return path


def _memory_runs(blob_env: str) -> bool:
    """Peak memory of each task on files whose size is in their rows' width, not their number:
    a 515 MB file of wide rows (loaded), a 1 GiB file that is one line (rejected whole)."""
    from hr_pipeline.storage.blob_store import BlobStore

    met = True
    for label, extract, loaded in (
        ("515 MB of wide rows", _wide_rows_file(WORK_DIR / "hired_employees_wide.csv", 515), True),
        ("1 GiB, one line (rejected)", _one_line_file(WORK_DIR / "one_line.csv", 1024), False),
    ):
        with fresh_postgres_database() as database:
            _prepare_warehouse(database)
            BlobStore().upload_file("raw-data", "incoming/hired_employees/bench.csv", extract)
            validate = measure_in_child(_validate_task, database, blob_env, start_method="forkserver")
            validations = validate.result["validations"]
            assert bool(validations[0]["unreadable_reason"]) != loaded, validations
            load = measure_in_child(
                _load_task, database, blob_env, validations, 1000, start_method="forkserver"
            )
            assert (load.result["loaded"] == validations[0]["valid"] > 0) == loaded, load.result
            print(
                f"  ({label}: validate {validate.result['seconds']:.1f} s, load {load.result['seconds']:.1f} s)"
            )
            for task, measurement in (("validate", validate), ("load", load)):
                met &= report_limit(
                    f"ingest {label}: {task} peak memory", measurement.peak_rss_mb, "MB", MEMORY_LIMIT_MB
                )
    return met


def main() -> bool:
    from tests.conftest import blob_connection_uri  # the same Azurite connection the tests use

    warm_forkserver(["hr_pipeline.ops.preload"])
    port, data_dir = _start_azurite()
    blob_env = blob_connection_uri(port)
    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    met = True
    try:
        for rows, batch_size in RUNS:
            extract = generate_hires_csv(WORK_DIR / f"hired_employees_{rows}.csv", rows)
            rounds = [_one_round(rows, batch_size, extract, blob_env) for _ in range(ROUNDS)]
            met &= _report_run(rows, batch_size, rounds, first_run=(rows, batch_size) == RUNS[0])
        if MEMORY_RUNS:
            met &= _memory_runs(blob_env)
    finally:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "azurite.sh"), "stop", str(data_dir), str(port)],
            capture_output=True,
        )
    return met


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
