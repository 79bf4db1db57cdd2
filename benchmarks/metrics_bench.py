"""Publishing the metrics on 1,000,000 hires (PostgreSQL) against the same SELECTs run bare in psql.

The project figure is ``hr_pipeline.metrics.publish_metrics``: the code the DAG's tasks run (render
the SQL, build the four tables aside in one transaction, the common-sql data-quality checks, the
swap in one transaction), timed in a fresh child process once its modules are imported. The
baseline is ``psql -f`` of the four metric SELECTs (the 2021 ones read the published all-years
tables), output thrown away. Each is the best of ``REPEATS`` runs, interleaved, after one warm-up
run each (best-of: the machine is shared, and noise only ever adds time; medians are printed too).
Target: publishing within 1.5x of the bare SELECTs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    WORK_DIR,
    fresh_postgres_database,
    generate_hires_csv,
    load_postgres_warehouse,
    measure_in_child,
    postgres_dsn,
    report,
    time_command,
    use_postgres_warehouse,
)

HIRES = int(os.environ.get("HR_BENCH_METRICS_HIRES", "1000000"))
REPEATS = 3
TARGET_RATIO = 1.5


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _publish_in_child(database: str) -> tuple[float, float, dict]:
    """(seconds to publish, seconds of imports before it, row counts); runs in a fresh process."""
    import logging

    started = time.perf_counter()
    use_postgres_warehouse(database)
    logging.disable(logging.INFO)
    import airflow.providers.common.sql.operators.sql  # noqa: F401  (imported by the DAG file too)
    import sqlglot  # noqa: F401  (imported once per task process, like the modules below)

    from hr_pipeline import metrics
    from hr_pipeline.warehouse.facade import Warehouse

    warehouse = Warehouse()
    warehouse.hook.log_sql = False  # the DAG's tasks log every statement; not timed here
    imported = time.perf_counter()
    with _quiet_stdout():  # the hooks log each statement's row count
        counts = metrics.publish_metrics(warehouse)
    return time.perf_counter() - imported, imported - started, counts


def _selects_file(path: Path) -> Path:
    from hr_pipeline import metrics

    path.write_text("".join(metrics.metric_query(m, "postgres") + ";\n" for m in metrics.METRIC_TABLES))
    return path


def main() -> bool:
    import logging

    logging.disable(logging.INFO)
    hires_csv = generate_hires_csv(WORK_DIR / f"hires_{HIRES}.csv", HIRES)
    with fresh_postgres_database() as database:
        started = time.perf_counter()
        load_postgres_warehouse(database, hires_csv)
        print(f"loaded {HIRES:,} hires with COPY in {time.perf_counter() - started:.1f} s", flush=True)
        selects = _selects_file(WORK_DIR / "metric_selects.sql")
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", postgres_dsn(database), "-f", str(selects)]

        measure_in_child(_publish_in_child, database)  # warm-up; creates the published tables
        time_command(psql)
        publish_runs, baseline_runs, import_runs = [], [], []
        for _ in range(REPEATS):
            seconds, imports, counts = measure_in_child(_publish_in_child, database).result
            publish_runs.append(seconds)
            import_runs.append(imports)
            baseline_runs.append(time_command(psql))
        output = subprocess.run(psql, check=True, capture_output=True, text=True).stdout
        print(f"published rows: {counts}; psql printed {output.count(chr(10)):,} lines", flush=True)
        print(
            f"(module imports before publishing, not counted: median {statistics.median(import_runs):.2f} s)"
        )
        print(
            f"medians: publish {statistics.median(publish_runs):.2f} s, "
            f"psql {statistics.median(baseline_runs):.2f} s; all runs: publish "
            f"{', '.join(f'{s:.2f}' for s in publish_runs)}; psql {', '.join(f'{s:.2f}' for s in baseline_runs)}"
        )
        return report(
            f"publish 4 metric tables ({HIRES:,} hires)",
            min(publish_runs),
            "same SELECTs bare in psql",
            min(baseline_runs),
            target_ratio=TARGET_RATIO,
        )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
