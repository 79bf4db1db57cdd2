"""Every DAG file imports cleanly, fast, and follows the project's policies."""

from __future__ import annotations

import ast
import os
from datetime import timedelta
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
# Every DAG of dags/, named: a DAG that disappears, or a new one nobody added here, fails the test.
EXPECTED_DAG_IDS = (
    "backup_tables",
    "check_backup_freshness",
    "ingest_on_landing",
    "ingest_table",
    "publish_metrics",
    "restore_table",
)
# dag_id -> (tags, retries, retry_delay): the retries of its default_args (task_defaults in
# hr_pipeline.ops.alerts), two for passing faults; ingest_on_landing only starts other runs, so
# none (Airflow's default of 0, no delay of ours).
DAG_POLICIES = {
    "backup_tables": ({"hr", "backup"}, 2, timedelta(minutes=2)),
    "check_backup_freshness": ({"hr", "backup", "alerts"}, 2, timedelta(minutes=2)),
    "ingest_on_landing": ({"hr", "ingest"}, 0, None),
    "ingest_table": ({"hr", "ingest"}, 2, timedelta(seconds=30)),
    "publish_metrics": ({"hr", "metrics"}, 2, timedelta(minutes=1)),
    "restore_table": ({"hr", "backup", "restore"}, 2, timedelta(minutes=1)),
}
HEAVY_MODULES = ("great_expectations", "pandas", "fastavro", "numpy", "azure.storage")


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=DAGS_FOLDER)


def test_no_import_errors(dag_bag):
    assert dag_bag.import_errors == {}


def test_the_dags_are_exactly_the_expected_ones(dag_bag):
    found, expected = set(dag_bag.dag_ids), set(EXPECTED_DAG_IDS)
    gone, new = sorted(expected - found), sorted(found - expected)
    assert (gone, new) == ([], []), (
        f"gone from dags/: {gone}; not in EXPECTED_DAG_IDS (add them there and to DAG_POLICIES): {new}"
    )
    assert set(DAG_POLICIES) == expected


def not_retried_tasks(dag_id: str) -> set[str]:
    """Tasks whose retries are 0 whatever their DAG's: publish_metrics' data-quality checks (a
    failed check is not a passing fault: hr_pipeline.metrics.data_quality_checks)."""
    if dag_id != "publish_metrics":
        return set()
    from hr_pipeline.metrics import CHECK_TASK_IDS, METRIC_NAMES

    return set(CHECK_TASK_IDS) | {f"check_{name}_columns" for name in METRIC_NAMES}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_policies(dag_bag, path):
    """Every DAG of every file in dags/ (a new DAG cannot escape): tags, no catch-up, retries,
    documentation, and a notifier on failure."""
    from hr_pipeline.ops.alerts import FAILURE_ALERTS

    dags = [dag for dag in dag_bag.dags.values() if Path(dag.fileloc).resolve() == path.resolve()]
    assert dags, f"{path.name} defines no DAG"
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    for dag in dags:
        assert dag.dag_id in DAG_POLICIES, f"{dag.dag_id}: add it to EXPECTED_DAG_IDS and DAG_POLICIES"
        tags, retries, retry_delay = DAG_POLICIES[dag.dag_id]
        assert set(dag.tags) == tags, f"{dag.dag_id}: tags"
        assert dag.catchup is False, f"{dag.dag_id} must not catch up"
        assert dag.doc_md == docstring, f"{dag.dag_id}: doc_md is not its file's docstring"
        assert len(dag.doc_md or "") > 80, f"{dag.dag_id}: doc_md is too short to document it"
        assert dag.default_args.get("retries", 0) == retries, f"{dag.dag_id}: default_args retries"
        assert dag.default_args.get("retry_delay") == retry_delay, f"{dag.dag_id}: default_args retry_delay"
        assert dag.default_args["on_failure_callback"] is FAILURE_ALERTS, f"{dag.dag_id}: no failure alerts"
        not_retried = not_retried_tasks(dag.dag_id)
        assert not_retried <= set(dag.task_ids), (
            f"{dag.dag_id}: tasks gone: {not_retried - set(dag.task_ids)}"
        )
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.retries == (0 if task.task_id in not_retried else retries), f"{where}: retries"
            if task.retries:
                assert task.retry_delay == retry_delay, f"{where}: retry_delay"
            callbacks = task.on_failure_callback
            assert (callbacks if isinstance(callbacks, list) else [callbacks]) == [FAILURE_ALERTS], (
                f"{where}: on_failure_callback"
            )


def test_table_params_offer_exactly_the_contract_tables(dag_bag):
    from hr_pipeline.contract.tables import TABLE_NAMES

    for dag_id in ("ingest_table", "restore_table"):
        schema = dag_bag.dags[dag_id].params.get_param("table_name").schema
        assert schema["enum"] == list(TABLE_NAMES)


def test_ingest_table_chain(dag_bag):
    from hr_pipeline.runtime.settings import DEFAULT_WAIT_MINUTES

    dag = dag_bag.dags["ingest_table"]
    assert dag.schedule is None  # triggered: by hand, the REST API or ingest_on_landing
    sensor = dag.get_task("wait_for_files")
    assert sensor.deferrable is True
    # Its timeout is the run's wait_minutes param (set when it runs), not a fixed one.
    assert sensor.wait_minutes == "{{ params.wait_minutes }}"
    assert dag.params["wait_minutes"] == DEFAULT_WAIT_MINUTES
    assert sensor.retries == 2  # a failed listing is retried; a timeout is not (AirflowSensorTimeout)
    assert sensor.downstream_task_ids == {"validate"}
    load = dag.get_task("load")  # one load task; its event names the table through an alias
    assert [a.name for a in load.outlets] == ["hr.ingested_table"]
    assert load.downstream_task_ids == {"archive"}
    assert dag.get_task("archive").downstream_task_ids == set()
    assert dag.max_active_runs == 16  # runs of different tables never wait on each other


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
    heavy = [line for line in result.stdout.splitlines() if line.startswith("HEAVY=")]
    assert heavy == ["HEAVY="], (
        f"{path.name} loads heavy libraries when parsed: {heavy or result.stdout[-500:]}"
    )
