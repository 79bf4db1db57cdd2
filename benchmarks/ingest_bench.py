"""Ingest: validate + load of a generated hired_employees extract on PostgreSQL, against
`psql \\copy` of the same file into the same table shape (the floor: no validation, no upsert).

Run at 1,000,000 rows (speed, memory) and 5,000,000 rows (memory stays flat).
Targets: validate + load within 3x the COPY time; peak memory under 500 MB at both sizes.

Validate and load run in two child processes, as the DAG's two tasks do, from the blob in
Azurite to the rows in PostgreSQL; the peak memory is the larger of the two processes' peak RSS.
Task start-up (imports, Airflow's first connection lookup) is timed apart and not counted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmarks.common import (
    WORK_DIR,
    dimension_rows,
    fresh_postgres_database,
    generate_hires_csv,
    measure_in_child,
    postgres_dsn,
    report,
    time_command,
    use_postgres_warehouse,
)

ROOT = Path(__file__).resolve().parents[1]
# (rows, load batch size): the DAG's default batch of 1,000 rows per transaction, then larger
# batches, which is what a bulk load should be triggered with (the figure the target is read on).
RUNS = tuple(
    tuple(int(x) for x in run.split(":"))
    for run in os.environ.get("HR_BENCH_INGEST_RUNS", "1000000:1000,1000000:100000,5000000:100000").split(",")
)


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
    """What a task process has done before the task's own code runs, timed apart because it is
    paid once per task whatever the file's size: imports, Airflow's first connection lookup,
    which loads its configuration and secrets backends (a worker's task runner does that first),
    and the clients made from the connections (the Azure SDK imports some 150 modules then).
    """
    import time

    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    use_postgres_warehouse(database)
    started = time.perf_counter()
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

    for conn_id in (BLOB_CONN_ID, WAREHOUSE_CONN_ID):
        BaseHook.get_connection(conn_id)
    from hr_pipeline.storage.blob_store import BlobStore
    from hr_pipeline.warehouse.facade import Warehouse

    BlobStore(), Warehouse()
    return time.perf_counter() - started


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
        "loaded": sum(load["loaded"] for load in loads.values()),
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


def main() -> bool:
    from tests.conftest import blob_connection_uri  # the same Azurite connection the tests use

    port, data_dir = _start_azurite()
    blob_env = blob_connection_uri(port)
    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    met = True
    try:
        for rows, batch_size in RUNS:
            extract = generate_hires_csv(WORK_DIR / f"hired_employees_{rows}.csv", rows)
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
                from hr_pipeline.storage.blob_store import BlobStore

                store = BlobStore()
                store.upload_file("raw-data", "incoming/hired_employees/bench.csv", extract)
                # Two processes, as the DAG's two tasks are: each one's peak memory is its own.
                validate = measure_in_child(_validate_task, database, blob_env)
                validations = validate.result["validations"]
                _checkpoint(database)
                load = measure_in_child(_load_task, database, blob_env, validations, batch_size)
                assert not store.exists("raw-data", "incoming/hired_employees/bench.csv")  # claimed, archived
                assert sum(v["valid"] for v in validations) == rows, validations
                assert load.result["loaded"] == rows, load.result
                work = validate.result["seconds"] + load.result["seconds"]
                print(
                    f"  (validate {validate.result['seconds']:.1f} s, peak {validate.peak_rss_mb:.0f} MB;"
                    f" load {load.result['seconds']:.1f} s, peak {load.peak_rss_mb:.0f} MB;"
                    f" task start-up {validate.result['start_up']:.1f} s and"
                    f" {load.result['start_up']:.1f} s, not counted)"
                )
                met &= report(
                    f"ingest {rows:,} rows, batch {batch_size:,}: validate + load",
                    work,
                    "psql \\copy of the same file",
                    baseline,
                    target_ratio=3.0,
                    peak_rss_mb=max(validate.peak_rss_mb, load.peak_rss_mb),
                    memory_target_mb=500,
                )
    finally:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "azurite.sh"), "stop", str(data_dir), str(port)],
            capture_output=True,
        )
    return met


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
