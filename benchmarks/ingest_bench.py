"""Ingest: validate + load of a generated hired_employees extract on PostgreSQL, against
`psql \\copy` of the same file into the same table shape (the floor: no validation, no upsert).

Run at 1,000,000 rows (speed, memory) and 5,000,000 rows (memory stays flat).
Targets: validate + load within 3x the COPY time; peak memory under 500 MB at both sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    for run in os.environ.get(
        "HR_BENCH_INGEST_RUNS", "1000000:1000,1000000:100000,5000000:100000").split(",")
)


def _start_azurite() -> tuple[int, Path]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = WORK_DIR / "azurite-ingest"
    subprocess.run(["bash", str(ROOT / "scripts" / "azurite.sh"), "start", str(data_dir), str(port)],
                   check=True, capture_output=True)
    return port, data_dir


def _validate_and_load(database: str, blob_env: str, source: str, batch_size: int) -> dict:
    """In a child process: exactly what ingest_table's validate and load tasks run."""
    import time

    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    use_postgres_warehouse(database)
    started = time.perf_counter()
    # Imports are paid once per task process, whatever the file's size: timed apart.
    import great_expectations  # noqa: F401
    import pyarrow.compute  # noqa: F401

    from hr_pipeline.ingest import load_validated, validate_incoming

    imported = time.perf_counter()
    validations = validate_incoming("hired_employees", run_id="bench", day="2021-01-01")
    validated = time.perf_counter()
    loaded = load_validated("hired_employees", validations, batch_size=batch_size)
    done = time.perf_counter()
    return {"valid": sum(v["valid"] for v in validations),
            "rejected": sum(v["rejected"] for v in validations), "loaded": sum(loaded.values()),
            "imports": imported - started, "validate": validated - imported, "load": done - validated}


def _prepare_warehouse(database: str) -> None:
    import psycopg

    use_postgres_warehouse(database)
    from hr_pipeline import ddl
    from hr_pipeline.contracts import CONTRACTS
    from hr_pipeline.warehouse import Warehouse

    Warehouse().ensure_tables()
    with psycopg.connect(postgres_dsn(database)) as connection:
        for table, label, count in (("departments", "Department", 12), ("jobs", "Job", 183)):
            with connection.cursor().copy(f"COPY {table} (id, {table[:-1]}) FROM STDIN") as copy:
                for row in dimension_rows(count, label):
                    copy.write_row(row)
        connection.execute(ddl.create_table(CONTRACTS["hired_employees"], "postgres", "copy_baseline"))


def main() -> bool:
    sys.path.insert(0, str(ROOT / "include"))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import blob_connection_uri  # the same Azurite connection the tests use

    port, data_dir = _start_azurite()
    blob_env = blob_connection_uri(port)
    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    met = True
    try:
        for rows, batch_size in RUNS:
            extract = generate_hires_csv(WORK_DIR / f"hired_employees_{rows}.csv", rows)
            with fresh_postgres_database() as database:
                _prepare_warehouse(database)
                baseline = time_command(
                    ["psql", postgres_dsn(database), "-v", "ON_ERROR_STOP=1", "-c",
                     f"\\copy copy_baseline FROM '{extract}' WITH (FORMAT csv)"]
                )
                from hr_pipeline.blob_store import BlobStore

                store = BlobStore()
                store.upload_file("raw-data", "incoming/hired_employees/bench.csv", extract)
                measured = measure_in_child(_validate_and_load, database, blob_env,
                                            "incoming/hired_employees/bench.csv", batch_size)
                store.delete("raw-data", "incoming/hired_employees/bench.csv")
                assert measured.result["loaded"] == rows, measured.result
                work = measured.result["validate"] + measured.result["load"]
                print(f"  (validate {measured.result['validate']:.1f} s, load {measured.result['load']:.1f} s;"
                      f" imports {measured.result['imports']:.1f} s, not counted)")
                met &= report(f"ingest {rows:,} rows, batch {batch_size:,}: validate + load",
                              work, "psql \\copy of the same file", baseline,
                              target_ratio=3.0, peak_rss_mb=measured.peak_rss_mb,
                              memory_target_mb=500)
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "azurite.sh"), "stop", str(data_dir), str(port)],
                       capture_output=True)
    return met


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
