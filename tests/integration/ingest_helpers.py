"""Helpers for tests that drop extracts into Azurite and run ingest_table with dag.test()."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from tests.conftest import SAMPLE_DATA


def raw_container() -> str:
    return os.environ["AZURE_BLOB_CONTAINER_RAW_DATA"]


def drop_file(store, table: str, data: bytes | str, file_name: str = "extract.csv") -> str:
    name = f"incoming/{table}/{file_name}"
    store.upload_bytes(raw_container(), name, data.encode() if isinstance(data, str) else data)
    return name


def drop_sample(store, table: str) -> str:
    return drop_file(store, table, (SAMPLE_DATA / f"{table}.csv").read_bytes(), f"{table}.csv")


def run_ingest(table: str, **conf):
    from hr_pipeline.runtime.settings import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_MAX_REJECT_RATIO,
        DEFAULT_WAIT_MINUTES,
    )

    dag = load_dag("ingest_table")
    # Every param given: the DAG object is shared by the session's tests, and dag.test() keeps
    # the params of a run's conf for the next run.
    defaults = {
        "batch_size": DEFAULT_BATCH_SIZE,
        "max_reject_ratio": DEFAULT_MAX_REJECT_RATIO,
        "wait_minutes": DEFAULT_WAIT_MINUTES,
    }
    return dag.test(run_conf={**defaults, "table_name": table, **conf})


_DAGS: dict = {}


def load_dag(dag_id: str):
    """The DAG as the scheduler would parse it from dags/<dag_id>.py (cached per session)."""
    if dag_id not in _DAGS:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py")
        assert not bag.import_errors, bag.import_errors
        _DAGS.update(bag.dags)
    return _DAGS[dag_id]


def blob_names(store, prefix: str = "") -> list[str]:
    return [b.name for b in store.list(raw_container(), prefix)]


def read_rejects(store, name: str) -> list[dict]:
    text = store.download_bytes(raw_container(), name).decode("utf-8")
    csv.field_size_limit(1 << 28)  # a rejected row may hold a field of many megabytes
    return list(csv.DictReader(io.StringIO(text, newline="")))


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
