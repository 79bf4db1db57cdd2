"""What every benchmark shares: generated data, a throw-away PostgreSQL database, measurement.

Peak memory is measured on a child process (the high-water mark of the process that did the work,
``peak_resident_mb``), so one benchmark's allocations never inflate another's figure.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue as queue_module
import random
import resource
import statistics
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
    queue.put((elapsed, peak_resident_mb(), result))


def peak_resident_mb() -> float:
    """This process's peak resident set (MB): the kernel's high-water mark of its memory map.

    ``VmHWM`` starts again at ``exec``, whereas ``ru_maxrss`` keeps the larger of the old and the
    new image's: a ``spawn`` child (fork, then exec of Python) would report its parent's size at
    the fork. A ``fork``/``forkserver`` child's map starts with its parent's pages, which it does
    use, and both figures count them."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_child(target: Callable, *args, start_method: str = "spawn") -> Measurement:
    """Run ``target(*args)`` in another process; its wall time and peak RSS (MB).

    ``target`` must be a module-level function and return something picklable. ``spawn``: a new
    interpreter; ``forkserver``: a fork of the server that ``warm_forkserver`` preloaded, as
    Airflow's workers fork task processes from a warm parent.
    """
    context = multiprocessing.get_context(start_method)
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    # A child that dies before it reports must fail the benchmark, not leave it waiting.
    while True:
        try:
            elapsed, peak_mb, result = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if not process.is_alive() and queue.empty():
                raise RuntimeError(
                    f"benchmark child {target.__name__} exited with {process.exitcode}"
                ) from None
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"benchmark child {target.__name__} exited with {process.exitcode}")
    return Measurement(elapsed, peak_mb, result)


def run_in_child(label: str, target: Callable, *args) -> tuple[float, float, object]:
    """One run of ``target`` (which returns ``(seconds of work, result)``) in a fresh spawned
    child, printed: (seconds, peak RSS MB, result)."""
    measurement = measure_in_child(target, *args)
    seconds, result = measurement.result
    print(f"  {label}: {seconds:.2f} s, peak {measurement.peak_rss_mb:.0f} MB", flush=True)
    return seconds, measurement.peak_rss_mb, result


def median_seconds(runs: list) -> float:
    """The median of runs given as ``run_in_child``'s tuples or as plain seconds."""
    return statistics.median(run[0] if isinstance(run, tuple) else run for run in runs)


def spread(runs: list) -> str:
    """The lowest and highest of runs (as ``median_seconds`` takes them), for a figure's name."""
    seconds = [run[0] if isinstance(run, tuple) else run for run in runs]
    return f"{min(seconds):.2f}-{max(seconds):.2f} s"


def highest_peak(runs: list) -> float:
    return max(peak for _, peak, _ in runs)


def warm_forkserver(modules: list[str]) -> None:
    """The forkserver that ``measure_in_child(..., start_method="forkserver")`` forks from
    imports ``modules`` first (as the local stack's scheduler has its workers' forkserver do)."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(modules)


def time_command(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - started


@dataclass
class Row:
    """One line of the table ``make bench`` prints at the end."""

    figure: str
    project: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: shown for scale, no target


ROWS: list[Row] = []


def report(
    name: str,
    project_seconds: float,
    baseline_name: str,
    baseline_seconds: float,
    target_ratio: float | None = None,
    peak_rss_mb: float | None = None,
    memory_target_mb: float | None = None,
) -> bool:
    """Record one figure beside its baseline (and, if given, its peak memory as a row of its own)
    for the final table, and print it now; returns whether it met its targets."""
    ratio = project_seconds / baseline_seconds if baseline_seconds else float("inf")
    met = target_ratio is None or ratio <= target_ratio
    _add(
        Row(
            name,
            f"{project_seconds:.2f} s",
            f"{baseline_name}: {baseline_seconds:.2f} s",
            f"{ratio:.2f}",
            f"<= {target_ratio}" if target_ratio is not None else "",
            met if target_ratio is not None else None,
        )
    )
    if peak_rss_mb is not None:
        met &= report_limit(f"{name}: peak memory", peak_rss_mb, "MB", memory_target_mb)
    return met


def report_limit(name: str, value: float, unit: str, limit: float | None, decimals: int = 0) -> bool:
    """Record a figure that has a limit instead of a baseline (memory, a start-up): met when
    under ``limit``."""
    met = limit is None or value < limit
    _add(
        Row(
            name,
            f"{value:.{decimals}f} {unit}",
            "",
            "",
            f"< {limit:g} {unit}" if limit is not None else "",
            met if limit is not None else None,
        )
    )
    return met


def report_failure(name: str, error: BaseException) -> None:
    """A benchmark that did not finish: a failed row naming the error."""
    _add(Row(f"{name}: did not finish", f"{type(error).__name__}: {error}"[:60], "", "", "", False))


def _add(row: Row) -> None:
    ROWS.append(row)
    print("  -> " + " | ".join(_cells(row)), flush=True)


def _cells(row: Row) -> list[str]:
    verdict = "" if row.met is None else ("pass" if row.met else "FAIL")
    return [row.figure, row.project, row.baseline, row.ratio, row.target, verdict]


def print_table(rows: list[Row]) -> None:
    """The figures as one Markdown table: figure, project, baseline, ratio, target, pass/fail."""
    print("\n| figure | project | baseline | ratio | target | pass/fail |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(_cells(row)) + " |")


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
