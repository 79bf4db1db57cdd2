"""The metric definitions and the SQL derived from them, for each dialect; the DAG's shape.

SQL Server is not available here: its statements are compiled with sqlglot's T-SQL parser, not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot

from hr_pipeline import metrics
from hr_pipeline.metrics import METRICS, MetricDefinitionError, MetricTable, publish_plan

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTRACT_COLUMNS = {
    "quarterly_hires_2021": ("department", "job", "q1", "q2", "q3", "q4"),
    "departments_above_mean_2021": ("id", "department", "hired"),
    "hires_by_quarter": ("year", "department", "job", "q1", "q2", "q3", "q4"),
    "departments_above_mean": ("year", "id", "department", "hired", "mean"),
}


def test_the_published_tables_are_the_contracts():
    assert {name: metric.column_names for name, metric in METRICS.items()} == CONTRACT_COLUMNS
    for metric in metrics.METRIC_TABLES:
        assert metric.sql_path.is_file(), metric.sql_path


def test_reading_order_comes_from_each_metrics_order_by():
    assert METRICS["quarterly_hires_2021"].order_by == (("department", False), ("job", False))
    assert METRICS["departments_above_mean_2021"].order_by == (("hired", True), ("department", False))
    assert METRICS["hires_by_quarter"].order_by[0] == ("year", False)
    assert METRICS["departments_above_mean"].order_by[:2] == (("year", False), ("hired", True))


@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "mssql"])
def test_a_query_that_disagrees_with_its_table_is_refused(dialect):
    wrong = MetricTable("hires_by_quarter", (("year", "integer"), ("department", "string")), (), ())
    with pytest.raises(MetricDefinitionError, match="hires_by_quarter.sql selects year, department, job"):
        metrics.metric_query(wrong, dialect)


def tsql_statements():
    plan = publish_plan("mssql")
    return [*plan.build, *plan.checks.values(), *plan.swap] + [
        metrics.reader_query(metric, "mssql") for metric in metrics.METRIC_TABLES
    ]


@pytest.mark.parametrize("statement", tsql_statements())
def test_every_statement_sent_to_sql_server_compiles_as_tsql(statement):
    parsed = [s for s in sqlglot.parse(statement, read="tsql") if s is not None]
    assert len(parsed) == 1
    assert "EXTRACT(" not in statement.upper()
    assert "STRFTIME" not in statement.upper()
    assert '"' not in statement  # T-SQL brackets, not ANSI quotes


def test_sql_server_extracts_year_and_quarter_with_datepart():
    build = "\n".join(publish_plan("mssql").build)
    assert "DATEPART(QUARTER, [datetime])" in build
    assert "DATEPART(YEAR, [datetime])" in build
    assert "AVG(CAST([hired] AS FLOAT))" in build  # AVG of an INT is an INT on SQL Server
    assert build.startswith("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    # T-SQL wants the CTEs before INSERT, not inside it
    for statement in publish_plan("mssql").build:
        if "WITH [" in statement:
            assert statement.startswith("WITH ["), statement[:80]
    assert "IF OBJECT_ID(N'dbo.hires_by_quarter', N'U') IS NULL" in "\n".join(publish_plan("mssql").swap)


def test_sqlite_reads_year_and_month_from_its_fixed_width_iso_text():
    build = "\n".join(publish_plan("sqlite").build)
    assert "EXTRACT" not in build.upper()
    assert "STRFTIME" not in build.upper()  # rounds 9999-12-31T23:59:59.9995Z and later to NULL
    assert 'CAST(SUBSTR("datetime", 1, 4) AS INTEGER)' in build
    assert 'CAST(SUBSTR("datetime", 6, 2) AS INTEGER)' in build
    assert build.startswith("BEGIN IMMEDIATE")  # DDL and DML in one transaction
    assert publish_plan("sqlite").swap[0] == "BEGIN IMMEDIATE"


def test_postgres_keeps_the_definition_as_written():
    plan = publish_plan("postgres")
    assert plan.build[0] == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"  # one snapshot
    assert 'EXTRACT(QUARTER FROM "datetime")' in "\n".join(plan.build)
    query = metrics.metric_query(METRICS["hires_by_quarter"], "postgres")
    assert sqlglot.parse_one(query, read="postgres").named_selects == list(
        CONTRACT_COLUMNS["hires_by_quarter"]
    )


@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "mssql"])
def test_build_reads_the_staged_tables_and_swap_replaces_each_table_once(dialect):
    plan = publish_plan(dialect)
    build = "\n".join(plan.build)
    for name in metrics.METRIC_NAMES:
        staged = name + metrics.STAGING_SUFFIX
        assert re.search(rf"INSERT INTO .{staged}.", build)
        # the 2021 tables read the all-years tables being rebuilt, never the published ones
        assert not re.search(rf"FROM .{name}.(?!_)", build)
        assert sum(1 for s in plan.swap if re.fullmatch(rf"DELETE FROM .{name}.", s)) == 1
        assert sum(1 for s in plan.swap if re.fullmatch(rf"DROP TABLE .{staged}.", s)) == 1
    for sql in plan.checks.values():
        assert metrics.STAGING_SUFFIX in sql


def test_column_checks_cover_keys_and_counts():
    mapping = metrics.column_checks(METRICS["hires_by_quarter"])
    assert set(mapping) == {"year", "department", "job", "q1", "q2", "q3", "q4"}
    assert mapping["q3"] == {"null_check": {"equal_to": 0}, "min": {"geq_to": 0}}
    assert mapping["job"] == {"null_check": {"equal_to": 0}}
    assert "mean" in metrics.column_checks(METRICS["departments_above_mean"])
    assert metrics.column_checks(METRICS["hires_by_quarter"]) is not mapping  # operators mutate it


def test_format_table_aligns_text_left_and_numbers_right():
    text = metrics.format_table(
        "t", ("department", "hired", "mean"), [("Support", 216, 12.5), ("IT", 7, 3.0)]
    )
    lines = text.splitlines()
    assert lines[0] == "t (2 rows)"
    assert lines[1] == "department  hired   mean"
    assert lines[3] == "Support       216  12.50"
    assert lines[4] == "IT              7   3.00"
    assert metrics.format_table("t", ("a",), []).splitlines() == ["t (0 rows)", "a", "-"]


def test_the_dag_schedules_daily_or_on_any_table_and_checks_before_swapping():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetAny, AssetOrTimeSchedule

    from hr_pipeline.ops.assets import TABLE_ASSETS

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "publish_metrics.py"))
    assert bag.import_errors == {}
    dag = bag.dags["publish_metrics"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.asset_condition == AssetAny(*TABLE_ASSETS.values())
    assert set(dag.tags) == {"hr", "metrics"}
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    swap = dag.task_dict["swap_in_metric_tables"]
    checks = {t for t in dag.task_ids if t.startswith("check_")}
    assert checks == set(metrics.CHECK_TASK_IDS) | {f"check_{n}_columns" for n in metrics.METRIC_NAMES}
    assert swap.upstream_task_ids == checks | {"render_metric_sql"}  # its SQL comes by XCom
    for task_id in checks:
        assert "build_metric_tables_aside" in dag.task_dict[task_id].upstream_task_ids
        assert dag.task_dict[task_id].retries == 0
    assert dag.task_dict["build_metric_tables_aside"].conn_id == "warehouse"
    assert swap.retries == 2  # the DAG's: a passing fault during the swap is retried
