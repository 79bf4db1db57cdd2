"""What every benchmark shares: generated data, a throw-away PostgreSQL database, measurement.

Peak memory is measured on a child process (``ru_maxrss`` of the process that did the work), so
one benchmark's allocations never inflate another's figure.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import resource
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

POSTGRES_DSN = os.environ.get("HR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
WORK_DIR = Path(os.environ.get("HR_BENCH_DIR", Path(__file__).resolve().parents[1] / ".local" / "bench"))


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float
    result: object = None


def generate_hires_csv(path: Path, rows: int, departments: int = 12, jobs: int = 183, seed: int = 7) -> Path:
    """A hired_employees extract of ``rows`` valid rows (ids 1..rows), in the contract's format (docs/CONTRACT.md)."""
    if path.exists() and path.stat().st_size > 0 and path.with_suffix(".rows").read_text() == str(rows):
        return path
    rng = random.Random(seed)
    start = datetime(2019, 1, 1)
    span = int(timedelta(days=3 * 365).total_seconds())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        for row_id in range(1, rows + 1):
            instant = start + timedelta(seconds=rng.randrange(span))
            handle.write(
                f"{row_id},Employee {row_id},{instant:%Y-%m-%dT%H:%M:%SZ},"
                f"{rng.randint(1, departments)},{rng.randint(1, jobs)}\n"
            )
    path.with_suffix(".rows").write_text(str(rows))
    return path


def dimension_rows(count: int, label: str) -> list[tuple[int, str]]:
    return [(i, f"{label} {i}") for i in range(1, count + 1)]


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create a database for one benchmark, drop it afterwards; yields its name."""
    import psycopg

    name = f"hr_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_dsn(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


def use_postgres_warehouse(database: str) -> None:
    """Point the ``warehouse`` Airflow connection (env var) at ``database``."""
    os.environ["AIRFLOW_CONN_WAREHOUSE"] = json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": database}
    )


def _child(target: Callable, args: tuple, queue) -> None:
    started = time.perf_counter()
    result = target(*args)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((elapsed, peak_kb / 1024, result))


def measure_in_child(target: Callable, *args) -> Measurement:
    """Run ``target(*args)`` in a fresh process; its wall time and peak RSS (MB).

    ``target`` must be a module-level function and return something picklable.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    elapsed, peak_mb, result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"benchmark child {target.__name__} exited with {process.exitcode}")
    return Measurement(elapsed, peak_mb, result)


def time_command(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - started


def report(
    name: str,
    project_seconds: float,
    baseline_name: str,
    baseline_seconds: float,
    target_ratio: float | None = None,
    peak_rss_mb: float | None = None,
    memory_target_mb: float | None = None,
) -> bool:
    """Print one figure beside its baseline; returns whether it met its targets."""
    ratio = project_seconds / baseline_seconds if baseline_seconds else float("inf")
    met = target_ratio is None or ratio <= target_ratio
    line = f"{name:<44} {project_seconds:8.2f} s   {baseline_name:<34} {baseline_seconds:8.2f} s   ratio {ratio:5.2f}"
    if target_ratio is not None:
        line += f" (target <= {target_ratio})"
    if peak_rss_mb is not None:
        mem_ok = memory_target_mb is None or peak_rss_mb < memory_target_mb
        met = met and mem_ok
        line += f"   peak {peak_rss_mb:6.0f} MB" + (
            f" (target < {memory_target_mb:.0f})" if memory_target_mb else ""
        )
    print(line + ("   OK" if met else "   MISSED"), flush=True)
    return met


def load_postgres_warehouse(database: str, hires_csv: Path) -> None:
    """Create the tables with the project's DDL, then fill them with plain COPY: 12 departments,
    183 jobs and the generated hires."""
    import psycopg

    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.warehouse.facade import Warehouse, copy_rows

    use_postgres_warehouse(database)
    Warehouse().ensure_tables()
    with psycopg.connect(postgres_dsn(database)) as connection, connection.cursor() as cursor:
        for table, label, count in (("departments", "Department", 12), ("jobs", "Job", 183)):
            copy_rows(cursor, table, CONTRACTS[table], dimension_rows(count, label))
        with (
            cursor.copy('COPY "hired_employees" FROM STDIN WITH (FORMAT csv)') as copy,
            open(hires_csv, "rb") as handle,
        ):
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
    with psycopg.connect(postgres_dsn(database), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
