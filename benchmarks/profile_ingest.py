"""Profile of the validate and load tasks (cProfile), as ``ingest_bench`` runs them: a generated
``hired_employees`` file in Azurite, a fresh PostgreSQL database. Not one of ``make bench``'s
figures; what benchmarks/RESULTS.md's per-step profile comes from.

    .venv/bin/python -m benchmarks.profile_ingest [rows] [batch]   # default 1000000 1000

Imports happen before the profiler starts (the task start-up is ``ingest_bench``'s figure); each
task's wall time goes to ``.local/bench/profile-<task>.pstats`` and the functions with the
largest cumulative time are printed. Threads (the read-ahead, the upload, the load's writer
connections) are not profiled by cProfile: their share shows as the main thread waiting.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import subprocess
import sys
import time

from benchmarks.common import WORK_DIR, fresh_postgres_database, generate_hires_csv, use_postgres_warehouse
from benchmarks.ingest_bench import ROOT, _prepare_warehouse, _start_azurite, _task_start_up


def _profiled(name: str, call):
    profile = cProfile.Profile()
    started = time.perf_counter()
    result = profile.runcall(call)
    print(f"\n== {name}: {time.perf_counter() - started:.2f} s ==")
    path = WORK_DIR / f"profile-{name}.pstats"
    profile.dump_stats(path)
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(28)
    return result


def main(rows: int, batch_size: int) -> None:
    from tests.conftest import blob_connection_uri

    port, data_dir = _start_azurite()
    blob_env = blob_connection_uri(port)
    os.environ["AIRFLOW_CONN_AZURE_BLOB"] = blob_env
    try:
        extract = generate_hires_csv(WORK_DIR / f"hired_employees_{rows}.csv", rows)
        with fresh_postgres_database() as database:
            use_postgres_warehouse(database)
            _prepare_warehouse(database)
            _task_start_up(database, blob_env, validating=True)
            from hr_pipeline.ingest.archive import archive_ingested
            from hr_pipeline.ingest.load import load_validated
            from hr_pipeline.ingest.validate import validate_incoming
            from hr_pipeline.storage.blob_store import BlobStore

            BlobStore().upload_file("raw-data", "incoming/hired_employees/bench.csv", extract)
            validations = _profiled(
                "validate", lambda: validate_incoming("hired_employees", run_id="profile", day="2021-01-01")
            )
            _profiled("load", lambda: load_validated("hired_employees", validations, batch_size=batch_size))
            archive_ingested("hired_employees", validations, day="2021-01-01")
    finally:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "azurite.sh"), "stop", str(data_dir), str(port)],
            capture_output=True,
        )


if __name__ == "__main__":
    arguments = [int(value) for value in sys.argv[1:3]]
    main(*(arguments + [1_000_000, 1000][len(arguments) :]))
