"""publish_metrics end to end on SQLite and PostgreSQL, on the real extracts. Nothing is mocked.

The expected tables are computed here from the CSV files with plain Python, never with the
project's SQL. The extracts are loaded with ``Warehouse.upsert_batch`` (the ingest DAG is tested
on its own). The DAG runs with ``dag.test()``.
"""

from __future__ import annotations

import csv
import importlib.util
import threading
import uuid
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from hr_pipeline import metrics
from hr_pipeline.contract.tables import CONTRACTS, ColumnType

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = PROJECT_ROOT / "include" / "sample_data"


# -- the extracts, read with plain Python ---------------------------------------------------------


def read_valid_rows(table: str) -> list[tuple]:
    """Rows with every field present, typed (int, str, naive UTC datetime)."""
    contract = CONTRACTS[table]
    rows = []
    with open(SAMPLE_DATA / f"{table}.csv", encoding="utf-8-sig", newline="") as handle:
        for fields in csv.reader(handle):
            if len(fields) != len(contract.columns) or any(f.strip() == "" for f in fields):
                continue
            typed = []
            for column, text in zip(contract.columns, fields):
                if column.type is ColumnType.INTEGER:
                    typed.append(int(text))
                elif column.type is ColumnType.TIMESTAMP:
                    assert text.endswith("Z"), text
                    typed.append(datetime.fromisoformat(text[:-1]))
                else:
                    typed.append(text)
            rows.append(tuple(typed))
    return rows


def extracts():
    departments = read_valid_rows("departments")
    jobs = read_valid_rows("jobs")
    department_ids = {d[0] for d in departments}
    job_ids = {j[0] for j in jobs}
    hires = [h for h in read_valid_rows("hired_employees") if h[3] in department_ids and h[4] in job_ids]
    return departments, jobs, hires


def expected_tables(departments, jobs, hires) -> dict[str, list[tuple]]:
    department_name = dict(departments)
    job_name = dict(jobs)
    quarters: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    hired: Counter = Counter()
    for _, _, when, department_id, job_id in hires:
        quarters[(when.year, department_name[department_id], job_name[job_id])][(when.month - 1) // 3] += 1
        hired[(when.year, department_id)] += 1
    hires_by_quarter = sorted((*key, *counts) for key, counts in quarters.items())
    above = []
    for year in sorted({year for year, _ in hired}):
        counts = {d: n for (y, d), n in hired.items() if y == year}
        mean = sum(counts.values()) / len(counts)
        listed = [(year, d, department_name[d], n, mean) for d, n in counts.items() if n > mean]
        above += sorted(listed, key=lambda row: (-row[3], row[2]))
    return {
        "hires_by_quarter": hires_by_quarter,
        "departments_above_mean": above,
        "quarterly_hires_2021": [row[1:] for row in hires_by_quarter if row[0] == 2021],
        "departments_above_mean_2021": [row[1:4] for row in above if row[0] == 2021],
    }


def load(warehouse, departments, jobs, hires):
    with warehouse.transaction() as connection:
        warehouse.upsert_batch(connection, CONTRACTS["departments"], departments)
        warehouse.upsert_batch(connection, CONTRACTS["jobs"], jobs)
        warehouse.upsert_batch(connection, CONTRACTS["hired_employees"], hires)


def published(warehouse) -> dict[str, list[tuple]]:
    return {name: metrics.read_metric(warehouse, name) for name in metrics.METRIC_NAMES}


def load_dag():
    """The DAG file as the scheduler imports it, fresh (so a patched check is picked up)."""
    path = PROJECT_ROOT / "dags" / "publish_metrics.py"
    spec = importlib.util.spec_from_file_location(f"publish_metrics_{uuid.uuid4().hex[:8]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.publish_metrics_dag


@pytest.fixture(scope="module")
def sample():
    return extracts()


@pytest.fixture(scope="module")
def expected(sample):
    return expected_tables(*sample)


# -- the real extracts: exact results --------------------------------------------------------------


def test_expected_tables_match_the_known_figures(sample, expected):
    departments, jobs, hires = sample
    assert len(hires) == 1999 - 70
    assert sum(1 for h in hires if h[2].year == 2021) == 1643
    above_2021 = expected["departments_above_mean_2021"]
    assert len(above_2021) == 7
    assert above_2021[0][1:] == ("Support", 216)


def test_publish_gives_the_expected_tables_exactly(warehouse, sample, expected):
    load(warehouse, *sample)
    counts = metrics.publish_metrics(warehouse)

    assert published(warehouse) == expected
    assert counts == {name: len(rows) for name, rows in expected.items()}
    name = "departments_above_mean_2021"
    rows = metrics.read_metric(warehouse, name)
    text = metrics.format_table(name, metrics.METRICS[name].column_names, rows)
    assert f"{name} (7 rows)" in text
    support = next(line for line in text.splitlines() if "Support" in line and "216" in line)
    assert support.split() == ["8", "Support", "216"]


def test_dag_publishes_the_expected_tables(airflow_db, warehouse, sample, expected):
    load(warehouse, *sample)
    run = load_dag().test()

    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    assert published(warehouse) == expected
    tables = set(metrics.METRIC_NAMES)
    staging = {name + metrics.STAGING_SUFFIX for name in tables}
    assert not staging & existing_tables(warehouse)  # the swap dropped the __next tables


def existing_tables(warehouse) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if warehouse.dialect == "sqlite"
        else "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(sql)
        return {row[0] for row in cursor.fetchall()}


# -- a failing data-quality check publishes nothing --------------------------------------------------


def more_hires_in_2021(hires, count=30):
    start = max(h[0] for h in hires) + 1
    return [(start + i, f"New {i}", datetime(2021, 5, 5, 12, 0, i), 8, 1) for i in range(count)]


def test_a_failing_check_in_the_dag_leaves_the_previous_tables(
    airflow_db, warehouse, sample, expected, monkeypatch
):
    load(warehouse, *sample)
    metrics.publish_metrics(warehouse)
    load(warehouse, [], [], more_hires_in_2021(sample[2]))  # a new publish would change Support

    real_checks = metrics.column_checks

    def impossible_for_hires_by_quarter(metric):
        mapping = real_checks(metric)
        if metric.name == "hires_by_quarter":
            mapping["q1"]["max"] = {"less_than": 0}  # some department hired in a first quarter
        return mapping

    monkeypatch.setattr(metrics, "column_checks", impossible_for_hires_by_quarter)
    run = load_dag().test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["check_hires_by_quarter_columns"] == "failed"
    assert states["build_metric_tables_aside"] == "success"
    assert states["swap_in_metric_tables"] == "upstream_failed"
    assert published(warehouse) == expected


def test_a_failing_check_leaves_the_previous_tables(warehouse, sample, expected):
    load(warehouse, *sample)
    metrics.publish_metrics(warehouse)
    load(warehouse, [], [], more_hires_in_2021(sample[2]))
    plan = metrics.publish_plan(warehouse.dialect)
    metrics.run_statements(warehouse, plan.build)
    with warehouse.transaction() as connection:  # a broken metric: a negative quarter
        connection.cursor().execute("UPDATE hires_by_quarter__next SET q2 = -1 WHERE department = 'Support'")

    with pytest.raises(metrics.MetricCheckError, match="check_hires_by_quarter_columns"):
        metrics.run_checks(warehouse, plan)
    assert published(warehouse) == expected

    metrics.publish_metrics(warehouse)  # the next good run publishes the new hires
    assert published(warehouse)["departments_above_mean_2021"][0][1:] == ("Support", 216 + 30)


def test_a_check_across_tables_catches_quarters_that_do_not_add_up(warehouse, sample):
    load(warehouse, *sample)
    plan = metrics.publish_plan(warehouse.dialect)
    metrics.run_statements(warehouse, plan.build)
    with warehouse.transaction() as connection:
        connection.cursor().execute(
            "UPDATE departments_above_mean__next SET hired = hired + 1 WHERE department = 'Support'"
        )
    with pytest.raises(metrics.MetricCheckError, match="check_quarters_add_up_to_hires"):
        metrics.run_checks(warehouse, plan)


# -- readers never see an empty or partial table (PostgreSQL) ----------------------------------------


def snapshot(cursor) -> tuple:
    cursor.execute(
        "SELECT (SELECT COUNT(*) FROM hires_by_quarter), (SELECT SUM(q1 + q2 + q3 + q4) FROM hires_by_quarter),"
        " (SELECT COUNT(*) FROM departments_above_mean_2021), (SELECT MAX(hired) FROM departments_above_mean_2021)"
    )
    return tuple(cursor.fetchone())


def test_a_reader_sees_the_old_tables_until_the_swap_commits(postgres_warehouse, sample):
    warehouse = postgres_warehouse
    load(warehouse, *sample)
    metrics.publish_metrics(warehouse)
    reader = warehouse.connect()
    reader.autocommit = True
    before = snapshot(reader.cursor())

    load(warehouse, [], [], more_hires_in_2021(sample[2]))
    plan = metrics.publish_plan("postgres")
    metrics.run_statements(warehouse, plan.build)
    metrics.run_checks(warehouse, plan)
    with warehouse.transaction() as writer:
        cursor = writer.cursor()
        for statement in plan.swap:
            cursor.execute(statement)
            assert snapshot(reader.cursor()) == before, statement  # mid-swap: still the old tables
    after = snapshot(reader.cursor())
    reader.close()
    assert after[1] == before[1] + 30
    assert after[3] == 216 + 30


def test_a_reader_thread_never_sees_an_empty_or_partial_table(postgres_warehouse, sample):
    warehouse = postgres_warehouse
    extra = more_hires_in_2021(sample[2])
    load(warehouse, *sample)
    metrics.publish_metrics(warehouse)
    reader = warehouse.connect()
    reader.autocommit = True
    state_a = snapshot(reader.cursor())
    load(warehouse, [], [], extra)
    metrics.publish_metrics(warehouse)
    state_b = snapshot(reader.cursor())
    assert state_a != state_b

    seen: list[tuple] = []
    stop = threading.Event()

    def read_until_stopped():
        cursor = reader.cursor()
        while not stop.is_set() and len(seen) < 200_000:
            seen.append(snapshot(cursor))

    thread = threading.Thread(target=read_until_stopped)
    thread.start()
    try:
        for _ in range(3):  # B -> A -> B -> A ...: every publish replaces every table
            with warehouse.transaction() as connection:
                connection.cursor().execute("DELETE FROM hired_employees WHERE id >= %s", (extra[0][0],))
            metrics.publish_metrics(warehouse)
            load(warehouse, [], [], extra)
            metrics.publish_metrics(warehouse)
    finally:
        stop.set()
        thread.join(timeout=60)
    reader.close()

    assert seen, "the reader thread read nothing"
    assert set(seen) <= {state_a, state_b}, set(seen) - {state_a, state_b}


# -- scheduling on the table assets ----------------------------------------------------------------


def test_an_asset_event_on_a_table_queues_the_dag(airflow_db, sqlite_warehouse):
    """What the scheduler does when ingest_table updates ``jobs``: the event queues publish_metrics."""
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.models.dag import DagModel
    from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
    from airflow.utils.session import create_session  # noqa: TID251 - scheduler internals need one
    from sqlalchemy import delete, select

    from hr_pipeline.ops.assets import TABLE_ASSETS

    # This test plays the scheduler: its steps (register_asset_change, dags_needing_dagruns) take
    # a metadata database session and have no public API.
    dag = load_dag()
    assert isinstance(dag.timetable, AssetOrTimeSchedule)  # daily AND on any table's change
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert dag.timetable.asset_condition == AssetAny(*TABLE_ASSETS.values())
    dag.test()  # parses dags/ into the metadata DB, as the DAG processor would
    jobs = TABLE_ASSETS["jobs"]

    with create_session() as session:
        session.execute(delete(AssetDagRunQueue))
        session.get(DagModel, "publish_metrics").is_paused = False
        session.flush()
        event = AssetManager.register_asset_change(
            asset=SerializedAssetUniqueKey(name=jobs.name, uri=jobs.uri), session=session
        )
        assert isinstance(event, AssetEvent)
        queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
        assert queued == ["publish_metrics"]
        due, triggered = DagModel.dags_needing_dagruns(session)
        assert list(triggered) == ["publish_metrics"]  # the scheduler would create an asset-triggered run
        session.rollback()
