"""`make demo [DATA=dir]`: the whole pipeline once, on the local emulator and SQLite warehouse.

Uploads ``<dir>/departments.csv``, ``jobs.csv`` and ``hired_employees.csv`` to
``incoming/<table>/`` in Azurite, runs ``ingest_table`` for each table in that order and then
``publish_metrics`` (with ``dag.test()``: the real DAGs, in this process, no scheduler needed),
prints rows loaded and rejected per table and the two 2021 metric tables. State is in ``.local/``:
``warehouse.db``, the Airflow home, the emulator's data, and ``airflow.env`` for the CLI.
Running it twice gives the same tables: every load is an upsert by id.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("departments", "jobs", "hired_employees")


def load_env(path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from local_env import read_env_file

    os.environ.update(read_env_file(path))
    sys.path.insert(0, os.environ["PYTHONPATH"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "include" / "sample_data"),
                        help="folder with departments.csv, jobs.csv, hired_employees.csv")
    args = parser.parse_args(argv)
    data = Path(args.data).resolve()
    missing = [f"{data / t}.csv" for t in TABLES if not (data / f"{t}.csv").is_file()]
    if missing:
        print(f"make demo: missing extract(s): {', '.join(missing)}", file=sys.stderr)
        return 2

    sys.path.insert(0, str(ROOT / "scripts"))
    from local_env import write_airflow_env

    env_file = write_airflow_env(ROOT)
    load_env(env_file)
    # Airflow reads its configuration at import: only now may it be imported.
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"],
                             capture_output=True, text=True)
    if migrate.returncode:
        print(migrate.stdout[-2000:], migrate.stderr[-4000:], file=sys.stderr)
        return 1
    logging.getLogger("airflow").setLevel(logging.WARNING)

    from airflow.dag_processing.dagbag import DagBag

    from hr_pipeline.blob_store import BlobStore
    from hr_pipeline.metrics import format_2021_tables
    from hr_pipeline.settings import backups_container, raw_container
    from hr_pipeline.warehouse import Warehouse

    store = BlobStore()
    for container in (raw_container(), backups_container()):
        store.ensure_container(container)
    bag = DagBag(dag_folder=ROOT / "dags")
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
        return 1

    print(f"\nIngesting from {data}")
    summary = []
    for table in TABLES:
        store.upload_file(raw_container(), f"incoming/{table}/{table}.csv", data / f"{table}.csv")
        run = bag.dags["ingest_table"].test(run_conf={"table_name": table})
        counts = _validation_counts(run)
        summary.append((table, str(run.state), *counts))
        if str(run.state) != "success":
            print(f"ingest_table for {table} ended {run.state}: see the log above", file=sys.stderr)
            _print_summary(summary)
            return 1
    _print_summary(summary)

    run = bag.dags["publish_metrics"].test()
    if str(run.state) != "success":
        print(f"publish_metrics ended {run.state}: see the log above", file=sys.stderr)
        return 1
    print("\n" + format_2021_tables(Warehouse()))
    _print_summary(summary)
    print(f"\nWarehouse: {ROOT / '.local' / 'warehouse.db'}   CLI environment: {env_file}")
    return 0


def _validation_counts(run) -> tuple[int, int, int]:
    """(rows, loaded, rejected) over the files of one ingest run, from its validate task."""
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        stored = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id,
                XComModel.task_id == "validate", XComModel.key == "return_value",
            )
        ).first()
    files = json.loads(stored) if isinstance(stored, str) else (stored or [])
    return (sum(f["rows"] for f in files), sum(f["valid"] for f in files),
            sum(f["rejected"] for f in files))


def _print_summary(rows) -> None:
    print(f"\n{'table':<16} {'run':<8} {'rows':>7} {'loaded':>7} {'rejected':>8}")
    for table, state, total, loaded, rejected in rows:
        print(f"{table:<16} {state:<8} {total:>7} {loaded:>7} {rejected:>8}")


if __name__ == "__main__":
    raise SystemExit(main())
