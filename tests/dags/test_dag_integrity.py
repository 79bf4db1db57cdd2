"""Every DAG file imports cleanly, fast, and follows the project's policies."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
EXPECTED_DAG_IDS = {"ingest_table", "backup_tables", "restore_table", "publish_metrics"}
HEAVY_MODULES = ("great_expectations", "pandas", "fastavro", "numpy", "azure.storage")


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=DAGS_FOLDER)


def test_no_import_errors(dag_bag):
    assert dag_bag.import_errors == {}


def test_the_specs_dags_are_all_there(dag_bag):
    assert EXPECTED_DAG_IDS <= set(dag_bag.dag_ids)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_policies(dag_bag, path):
    """Every DAG of every file in dags/ (a new DAG cannot escape): tags, no catch-up, retries,
    documentation, and a notifier on failure."""
    dags = [dag for dag in dag_bag.dags.values() if Path(dag.fileloc).resolve() == path.resolve()]
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.catchup is False, f"{dag.dag_id} must not catch up"
        assert dag.doc_md and len(dag.doc_md) > 80, f"{dag.dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries is not None
        if dag.dag_id != "ingest_on_landing":  # it only starts other runs: nothing to retry
            assert dag.default_args.get("retries", 0) >= 1, f"{dag.dag_id}: default_args has no retries"


def test_table_params_offer_exactly_the_contract_tables(dag_bag):
    from hr_pipeline.contract.tables import TABLE_NAMES

    for dag_id in ("ingest_table", "restore_table"):
        schema = dag_bag.dags[dag_id].params.get_param("table_name").schema
        assert schema["enum"] == list(TABLE_NAMES)


def test_ingest_table_chain(dag_bag):
    dag = dag_bag.dags["ingest_table"]
    assert dag.schedule is None or dag.timetable.summary in ("None", None)
    sensor = dag.get_task("wait_for_files")
    assert sensor.deferrable is True
    assert sensor.timeout > 0
    assert sensor.retries >= 1  # a failed listing is retried; a timeout is not (AirflowSensorTimeout)
    assert "validate" in sensor.downstream_task_ids
    load = dag.get_task("load")  # one load task; its event names the table through an alias
    assert [a.name for a in load.outlets] == ["hr.ingested_table"]
    assert "archive" in load.downstream_task_ids
    assert dag.max_active_runs > 1  # runs of different tables never wait on each other


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_nothing_heavy_at_top_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert not name.startswith(HEAVY_MODULES), f"{path.name} imports {name} at top level"
            assert not name.startswith(("airflow.decorators", "airflow.models.dag", "airflow.datasets")), (
                f"{path.name}: Airflow 2 import {name}; use airflow.sdk"
            )


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_parse_without_loading_heavy_libraries(path):
    """Import the file in a fresh interpreter and check no heavy library got loaded."""
    import subprocess
    import sys

    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(path)!r}, run_name='dag_file')\n"
        f"heavy = sorted({{m for m in sys.modules for h in {HEAVY_MODULES!r} if m == h or m.startswith(h + '.')}})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY=\n" in result.stdout + "\n" and "HEAVY=," not in result.stdout, result.stdout[-500:]
