"""Lineage: the OpenLineage events of an ingest run and a publish run name what they read and wrote.

The runs are real ``dag.test()`` runs (Azurite, a PostgreSQL warehouse) in a process of their own
(``lineage_runs.py``: the provider reads its settings once per process), with the provider's file
transport writing every event to a file of this test and ``hr_pipeline.ops.lineage.HrAssetsExtractor``
registered, exactly as the local stack configures them (see the README's "Lineage").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hr_pipeline.metrics import METRIC_NAMES
from hr_pipeline.ops.lineage import read_events
from tests.integration.ingest_helpers import drop_sample, raw_container

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _completed(events: list[dict], job: str) -> dict:
    found = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]
    assert found, f"no COMPLETE event of {job}: {sorted({e['job']['name'] for e in events})}"
    return found[-1]


def _names(datasets: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def test_ingest_and_publish_events_name_their_inputs_and_outputs(
    airflow_db, blob_store, postgres_warehouse, postgres_database, tmp_path
):
    for table in ("departments", "jobs", "hired_employees"):
        drop_sample(blob_store, table)
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__EXTRACTORS": "hr_pipeline.ops.lineage.HrAssetsExtractor",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "hr-test",
    }
    runs = [
        f"ingest_table:{json.dumps({'table_name': t})}" for t in ("departments", "jobs", "hired_employees")
    ] + ["publish_metrics"]
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("lineage_runs.py")), *runs],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    events = read_events(events_file)

    landing = (f"wasbs://{raw_container()}@devstoreaccount1.blob.core.windows.net", "incoming/{}")
    warehouse = ("postgres://127.0.0.1:5432", f"{postgres_database}.public.{{}}")

    def blob(table):
        return landing[0], landing[1].format(table)

    def table_(name):
        return warehouse[0], warehouse[1].format(name)

    # Each ingest run: validate reads the run's own landing folder (not the other tables'),
    # load writes the run's table. Three runs of one DAG: one COMPLETE event each per task.
    for job, expect_out in (("ingest_table.validate", False), ("ingest_table.load", True)):
        completed = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]
        assert len(completed) == 3, [e["job"]["name"] for e in events]
        seen = set()
        for event in completed:
            inputs, outputs = _names(event["inputs"]), _names(event["outputs"])
            assert len(inputs) == 1, inputs
            ((namespace, name),) = inputs
            table = name.removeprefix("incoming/")
            assert (namespace, name) == blob(table)
            assert outputs == ({table_(table)} if expect_out else set()), outputs
            seen.add(table)
        assert seen == {"departments", "jobs", "hired_employees"}

    # The publish run: reads the three tables, writes the four metric tables.
    published = _completed(events, "publish_metrics.record_published_row_counts")
    assert _names(published["inputs"]) == {table_(t) for t in ("departments", "jobs", "hired_employees")}
    assert _names(published["outputs"]) == {table_(name) for name in METRIC_NAMES}
    # Every event is in the configured namespace, and START events carry the same datasets.
    assert {e["job"]["namespace"] for e in events} == {"hr-test"}
    started = [
        e
        for e in events
        if e["eventType"] == "START" and e["job"]["name"] == "publish_metrics.record_published_row_counts"
    ]
    assert len(started) == 1, started  # the task ran once
    assert _names(started[-1]["outputs"]) == _names(published["outputs"])
