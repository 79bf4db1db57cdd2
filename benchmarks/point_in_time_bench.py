"""A point-in-time restore (PostgreSQL, Azurite): a 1,000,000-row backup plus ten journaled loads of
100,000 rows replayed over it, against restoring the same backup plus ten ``psql \\copy``.

Setup, not timed: 1,000,000 hires loaded and backed up with ``backup_table``, then ten extracts of
100,000 hires ingested through the project's validate, load and archive (the first half updates of
ids the backup holds, the rest new ids), so the journal holds ten loads after the backup.

Project figure: ``restore_table("hired_employees", as_of=<the instant after the tenth load>)``:
the backup, the ten loads replayed from their archived rows files (sha256 checked), the reference
checks and the swap in one transaction, and its journal row.
Baseline: ``restore_table`` of the same backup by name (no replay), plus ``psql \\copy`` of the
ten extracts' rows as CSV into an empty table of the same shape.

Each figure is the median of ``REPEATS`` rounds, the project's run and its baseline's in turn, in
fresh child processes (peak memory is the highest child's, imports included). Target: at most 1.5x the baseline, peak memory under 500 MB.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.backup_bench import _empty_copy_of_hires, _free_port, _use_azurite
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

HIRES = int(os.environ.get("HR_BENCH_PIT_HIRES", "1000000"))
LOADS = int(os.environ.get("HR_BENCH_PIT_LOADS", "10"))
LOAD_ROWS = int(os.environ.get("HR_BENCH_PIT_LOAD_ROWS", "100000"))
REPEATS = int(os.environ.get("HR_BENCH_PIT_REPEATS", "3"))
TARGET_RATIO = 1.5
MEMORY_TARGET_MB = 500
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _load_csv(path: Path, first_id: int, rows: int, seed: int) -> Path:
    """``rows`` valid hires with ids from ``first_id`` on."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        for row_id in range(first_id, first_id + rows):
            handle.write(
                f"{row_id},Rehired {row_id},2021-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z,"
                f"{rng.randint(1, 12)},{rng.randint(1, 183)}\n"
            )
    return path


def _journal_ten_loads(database: str, extracts: list[Path]) -> datetime:
    """Ingest each extract through the project's tasks; the instant after the last commit."""
    from hr_pipeline.ingest.archive import archive_ingested
    from hr_pipeline.ingest.load import load_validated
    from hr_pipeline.ingest.validate import validate_incoming
    from hr_pipeline.runtime.settings import raw_container
    from hr_pipeline.storage.blob_store import BlobStore

    use_postgres_warehouse(database)
    store = BlobStore()
    store.ensure_container(raw_container())
    for number, extract in enumerate(extracts, 1):
        store.upload_file(raw_container(), f"incoming/hired_employees/{extract.name}", extract)
        run_id = f"bench-load-{number}"
        validations = validate_incoming("hired_employees", run_id=run_id, day="2026-12-05")
        load_validated("hired_employees", validations, batch_size=1000)
        archive_ingested("hired_employees", validations, day="2026-12-05", run_id=run_id)
    time.sleep(0.01)
    return datetime.now(timezone.utc)


def _restore(database: str, work_dir: str, backup: str, as_of: str | None) -> tuple[float, dict]:
    use_postgres_warehouse(database)
    import fastavro  # noqa: F401 - what a worker has imported before it runs the task

    import hr_pipeline.backup.restore as restore
    from hr_pipeline.storage.blob_store import BlobStore
    from hr_pipeline.warehouse.facade import Warehouse

    store, warehouse = BlobStore(), Warehouse()  # the connections looked up, as at a task's start
    warehouse.connect().close()
    store.exists(os.environ["AZURE_BLOB_CONTAINER_BACKUPS"], "warm-up")
    started = time.perf_counter()
    result = restore.restore_table(
        "hired_employees", backup, as_of, warehouse=warehouse, store=store, work_dir=Path(work_dir)
    )
    return time.perf_counter() - started, result.as_dict()


def main() -> bool:
    generate_hires_csv(WORK_DIR / f"hires_{HIRES}.csv", HIRES)
    work_dir = WORK_DIR / "point-in-time"
    work_dir.mkdir(parents=True, exist_ok=True)
    extracts = [
        _load_csv(work_dir / f"load_{n}.csv", HIRES - LOAD_ROWS // 2 + 1 + n * LOAD_ROWS, LOAD_ROWS, n)
        for n in range(LOADS)
    ]
    os.environ.setdefault("AIRFLOW_HOME", str(WORK_DIR / "airflow"))
    port = _free_port()
    azurite_dir = WORK_DIR / "azurite-point-in-time-bench"
    script = PROJECT_ROOT / "scripts" / "azurite.sh"
    subprocess.run(["bash", str(script), "start", str(azurite_dir), str(port)], check=True)
    try:
        _use_azurite(port)
        os.environ["AZURE_BLOB_CONTAINER_RAW_DATA"] = os.environ["AZURE_BLOB_CONTAINER_BACKUPS"] + "-raw"
        with fresh_postgres_database() as database:
            return _run(database, work_dir, extracts)
    finally:
        subprocess.run(["bash", str(script), "stop", str(azurite_dir), str(port)], check=False)


def _run(database: str, work_dir: Path, extracts: list[Path]) -> bool:
    from hr_pipeline.backup.backups import backup_table

    load_postgres_warehouse(database, WORK_DIR / f"hires_{HIRES}.csv")
    backup = backup_table("hired_employees", work_dir=work_dir).blob_name
    as_of = _journal_ten_loads(database, extracts).isoformat()
    print(f"{HIRES:,} hires backed up, {LOADS} loads of {LOAD_ROWS:,} journaled after it", flush=True)

    # The project and its baseline in turn, run after run: a slow minute on this shared machine
    # then falls on both sides instead of on one.
    projects, backups, copies = [], [], []
    for _ in range(REPEATS):
        projects.append(
            run_in_child("restore as of, with replays", _restore, database, str(work_dir), "latest", as_of)
        )
        assert len(projects[-1][2]["replayed"]) == LOADS, projects[-1][2]
        backups.append(run_in_child("restore of the backup", _restore, database, str(work_dir), backup, None))
        _empty_copy_of_hires(database, "copy_target")
        copies.append(
            sum(
                time_command(
                    [
                        "psql",
                        postgres_dsn(database),
                        "-c",
                        f"\\copy copy_target FROM '{extract}' WITH (FORMAT csv)",
                    ]
                )
                for extract in extracts
            )
        )
        print(f"  psql \\copy of the {LOADS} extracts: {copies[-1]:.2f} s", flush=True)
    baselines = [backup_run[0] + copy for backup_run, copy in zip(backups, copies)]
    return report(
        f"restore as of: backup + {LOADS} x {LOAD_ROWS // 1000}k replayed, median of {REPEATS} "
        f"(project {spread(projects)}, baseline {spread(baselines)})",
        median_seconds(projects),
        "backup restore + psql \\copy",
        median_seconds(baselines),
        TARGET_RATIO,
        highest_peak(projects + backups),
        MEMORY_TARGET_MB,
    )
