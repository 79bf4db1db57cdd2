"""Backing up and restoring 1,000,000 hires (PostgreSQL, Azurite) against bare baselines.

Project figures: ``hr_pipeline.backup.backups.backup_table`` and ``hr_pipeline.backup.restore.restore_table``,
the functions the DAGs' tasks call, on a private Azurite (started here on a free port): snapshot
read, AVRO (deflate) file, upload, read-back verification; download, checksum and schema checks,
staging, reference checks and the swap in one transaction.

Baselines, on the same rows in the same run:
- backup: a bare server-side cursor feeding ``fastavro.writer`` (deflate) into a local file;
- restore: a bare ``fastavro.reader`` of that file feeding psycopg ``COPY`` into an empty table,
  and ``psql \\copy`` of the same rows as CSV into an empty table (for scale, no target).

Each figure is the median of ``REPEATS`` runs, the project's and its baseline's in turn, each
timed inside a fresh child process once its modules are imported (peak memory is the highest
child's, imports included). Targets: backup within 1.1x its baseline, restore within 1.1x the reader-to-COPY
baseline, peak memory under 400 MB.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

from benchmarks.common import (
    WORK_DIR,
    fresh_postgres_database,
    generate_hires_csv,
    highest_peak,
    load_postgres_warehouse,
    median_seconds,
    postgres_dsn,
    report,
    run_in_child,
    spread,
    time_command,
    use_postgres_warehouse,
)

HIRES = int(os.environ.get("HR_BENCH_BACKUP_HIRES", "1000000"))
REPEATS = int(os.environ.get("HR_BENCH_BACKUP_REPEATS", "3"))
TARGET_RATIO = 1.1
MEMORY_TARGET_MB = 400
PROJECT_ROOT = Path(__file__).resolve().parents[1]
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
COLUMNS = ("id", "name", "datetime", "department_id", "job_id")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _use_azurite(port: int) -> None:
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = json.dumps(
        {"conn_type": "wasb", "extra": {"connection_string": connection_string}}
    )
    os.environ["AZURE_BLOB_CONTAINER_BACKUPS"] = f"bench-backups-{uuid.uuid4().hex[:8]}"


def _empty_copy_of_hires(database: str, table: str) -> None:
    """A fresh table shaped like hired_employees (same DDL, primary key included)."""
    import psycopg

    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.warehouse.dialects import POSTGRES

    with psycopg.connect(postgres_dsn(database), autocommit=True) as connection:
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        connection.execute(POSTGRES.create_table(CONTRACTS["hired_employees"], table_name=table))


# -- what runs in the children (module level: they are pickled by name) -------------------------


def _import_project() -> None:
    """What a worker process has imported before it runs a task (not part of the figure)."""
    import fastavro  # noqa: F401
    import psycopg  # noqa: F401
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook  # noqa: F401
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    import hr_pipeline.backup.backups
    import hr_pipeline.backup.restore
    import hr_pipeline.storage.blob_store
    import hr_pipeline.warehouse.facade  # noqa: F401


def _project_backup(database: str, work_dir: str) -> tuple[float, dict]:
    use_postgres_warehouse(database)
    _import_project()
    from hr_pipeline.backup import backups as backup

    started = time.perf_counter()
    result = backup.backup_table("hired_employees", work_dir=Path(work_dir))
    return time.perf_counter() - started, result.as_dict()


def _baseline_backup(database: str, path: str) -> tuple[float, int]:
    import fastavro
    import psycopg

    from hr_pipeline.contract.tables import CONTRACTS, avro_schema

    schema = fastavro.parse_schema(avro_schema(CONTRACTS["hired_employees"]))
    started = time.perf_counter()
    with psycopg.connect(postgres_dsn(database)) as connection:
        with connection.cursor(name="baseline") as cursor, open(path, "wb") as handle:
            cursor.itersize = 50_000
            cursor.execute(
                'SELECT "id", "name", "datetime", "department_id", "job_id" FROM "hired_employees"'
            )
            fastavro.writer(handle, schema, (dict(zip(COLUMNS, row)) for row in cursor), codec="deflate")
    return time.perf_counter() - started, os.path.getsize(path)


def _project_restore(database: str, work_dir: str) -> tuple[float, dict]:
    use_postgres_warehouse(database)
    _import_project()
    from hr_pipeline.backup import restore

    started = time.perf_counter()
    result = restore.restore_table("hired_employees", "latest", work_dir=Path(work_dir))
    return time.perf_counter() - started, result.as_dict()


def _baseline_restore(database: str, path: str, table: str) -> tuple[float, int]:
    import fastavro
    import psycopg

    started = time.perf_counter()
    rows = 0
    with (
        psycopg.connect(postgres_dsn(database)) as connection,
        connection.cursor() as cursor,
        open(path, "rb") as handle,
    ):
        columns = ", ".join(f'"{c}"' for c in COLUMNS)
        with cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            for record in fastavro.reader(handle):
                copy.write_row(
                    (
                        record["id"],
                        record["name"],
                        record["datetime"],
                        record["department_id"],
                        record["job_id"],
                    )
                )
                rows += 1
    return time.perf_counter() - started, rows


# -- the benchmark --------------------------------------------------------------------------------


def main() -> bool:
    hires_csv = generate_hires_csv(WORK_DIR / f"hires_{HIRES}.csv", HIRES)
    work_dir = WORK_DIR / "backup"
    work_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(WORK_DIR / "airflow"))
    port = _free_port()
    azurite_dir = WORK_DIR / "azurite-backup-bench"
    script = PROJECT_ROOT / "scripts" / "azurite.sh"
    subprocess.run(["bash", str(script), "start", str(azurite_dir), str(port)], check=True)
    try:
        _use_azurite(port)
        with fresh_postgres_database() as database:
            load_postgres_warehouse(database, hires_csv)
            print(f"{HIRES:,} hires loaded; {REPEATS} run(s) of each figure", flush=True)

            # The project and its baseline in turn, run after run: a slow minute on this shared
            # machine then falls on both sides instead of on one.
            baseline_file = work_dir / "baseline.avro"
            backups, base_backups = [], []
            for _ in range(REPEATS):
                backups.append(run_in_child("project backup", _project_backup, database, str(work_dir)))
                base_backups.append(
                    run_in_child("cursor -> fastavro", _baseline_backup, database, str(baseline_file))
                )
            print(f"  backup file {backups[-1][2]['bytes']:,} bytes (baseline {base_backups[-1][2]:,} bytes)")

            csv_file = work_dir / "hires.csv"
            dsn = postgres_dsn(database)
            subprocess.run(["psql", dsn, "-qc", f"\\copy hired_employees TO '{csv_file}' CSV"], check=True)
            restores, base_restores, psql_runs = [], [], []
            for _ in range(REPEATS):
                restores.append(run_in_child("project restore", _project_restore, database, str(work_dir)))
                assert restores[-1][2]["rows"] == HIRES, restores[-1][2]
                _empty_copy_of_hires(database, "hires_baseline")
                base_restores.append(
                    run_in_child(
                        "fastavro -> COPY", _baseline_restore, database, str(baseline_file), "hires_baseline"
                    )
                )
                assert base_restores[-1][2] == HIRES
                _empty_copy_of_hires(database, "hires_psql")
                psql_runs.append(
                    time_command(["psql", dsn, "-qc", f"\\copy hires_psql FROM '{csv_file}' CSV"])
                )
            csv_file.unlink(missing_ok=True)
            baseline_file.unlink(missing_ok=True)

        print()
        met = report(
            f"backup (project: snapshot, upload, verify), median of {REPEATS} "
            f"(project {spread(backups)}, baseline {spread(base_backups)})",
            median_seconds(backups),
            "cursor -> fastavro.writer (local)",
            median_seconds(base_backups),
            TARGET_RATIO,
            highest_peak(backups),
            MEMORY_TARGET_MB,
        )
        met &= report(
            f"restore (project: download, check, swap), median of {REPEATS} "
            f"(project {spread(restores)}, baseline {spread(base_restores)})",
            median_seconds(restores),
            "fastavro.reader -> COPY",
            median_seconds(base_restores),
            TARGET_RATIO,
            highest_peak(restores),
            MEMORY_TARGET_MB,
        )
        report(
            "restore (project), for scale",
            median_seconds(restores),
            "psql \\copy CSV",
            median_seconds(psql_runs),
        )
        return met
    finally:
        subprocess.run(["bash", str(script), "stop", str(azurite_dir), str(port)], check=False)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
