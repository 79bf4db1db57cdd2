"""Metric semantics at the edges, published for real on SQLite and on PostgreSQL.

Each case loads a few typed rows with ``Warehouse.upsert_batch`` and publishes with the same
include/ code the DAG's tasks run (statements, common-sql checks, swap).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from hr_pipeline import metrics
from hr_pipeline.contract.tables import CONTRACTS

DEPARTMENTS = [(1, "Alpha"), (2, "Beta"), (3, "Gamma")]
JOBS = [(1, "Analyst"), (2, "Baker")]


def load(warehouse, hires, departments=DEPARTMENTS, jobs=JOBS):
    with warehouse.transaction() as connection:
        warehouse.upsert_batch(connection, CONTRACTS["departments"], departments)
        warehouse.upsert_batch(connection, CONTRACTS["jobs"], jobs)
        warehouse.upsert_batch(connection, CONTRACTS["hired_employees"], hires)


def hires_at(*instants, department=1, job=1, first_id=1):
    return [(first_id + i, f"P{first_id + i}", when, department, job) for i, when in enumerate(instants)]


def test_quarter_and_year_boundaries_are_of_the_utc_instant(warehouse):
    load(
        warehouse,
        hires_at(
            datetime(2020, 12, 31, 23, 59, 59, 999999),  # 2020 Q4
            datetime(2021, 1, 1, 0, 0, 0),  # Q1
            datetime(2021, 3, 31, 23, 59, 59),  # Q1
            datetime(2021, 4, 1, 0, 0, 0),  # Q2
            datetime(2021, 6, 30, 23, 59, 59, 999999),  # Q2, fractional seconds
            datetime(2021, 7, 1, 0, 0, 0, 1),  # Q3
            datetime(2021, 9, 30, 12, 0, 0, 500000),  # Q3
            datetime(2021, 10, 1, 0, 0, 0),  # Q4
            datetime(2021, 12, 31, 23, 59, 59, 999999),  # Q4
            datetime(2022, 1, 1, 0, 0, 0),  # 2022 Q1
        ),
    )
    metrics.publish_metrics(warehouse)

    assert metrics.read_metric(warehouse, "quarterly_hires_2021") == [("Alpha", "Analyst", 2, 2, 2, 2)]
    assert metrics.read_metric(warehouse, "hires_by_quarter") == [
        (2020, "Alpha", "Analyst", 0, 0, 0, 1),
        (2021, "Alpha", "Analyst", 2, 2, 2, 2),
        (2022, "Alpha", "Analyst", 1, 0, 0, 0),
    ]


def test_the_mean_counts_only_departments_that_hired_that_year(warehouse):
    # 2021: Alpha 3, Beta 2, Gamma none -> mean 2.5 (not 5/3): only Alpha is above it.
    # 2022: Gamma 4, Alpha 1 -> mean 2.5: Gamma.
    hires = (
        hires_at(*[datetime(2021, 2, d) for d in (1, 2, 3)], department=1, first_id=1)
        + hires_at(*[datetime(2021, 5, d) for d in (1, 2)], department=2, job=2, first_id=10)
        + hires_at(*[datetime(2022, 8, d) for d in (1, 2, 3, 4)], department=3, first_id=20)
        + hires_at(datetime(2022, 1, 1), department=1, first_id=30)
    )
    load(warehouse, hires)
    metrics.publish_metrics(warehouse)

    assert metrics.read_metric(warehouse, "departments_above_mean_2021") == [(1, "Alpha", 3)]
    rows = metrics.read_metric(warehouse, "departments_above_mean")
    assert [(y, i, d, n) for y, i, d, n, _ in rows] == [(2021, 1, "Alpha", 3), (2022, 3, "Gamma", 4)]
    assert [mean for *_, mean in rows] == [2.5, 2.5]


def test_a_department_equal_to_the_mean_is_not_listed(warehouse):
    hires = hires_at(datetime(2021, 3, 1), datetime(2021, 3, 2), department=1) + hires_at(
        datetime(2021, 3, 3), datetime(2021, 3, 4), department=2, first_id=10
    )
    load(warehouse, hires)
    metrics.publish_metrics(warehouse)
    assert metrics.read_metric(warehouse, "departments_above_mean_2021") == []
    assert metrics.read_metric(warehouse, "departments_above_mean") == []
    assert metrics.read_metric(warehouse, "quarterly_hires_2021") == [
        ("Alpha", "Analyst", 2, 0, 0, 0),
        ("Beta", "Analyst", 2, 0, 0, 0),
    ]


def test_a_year_with_no_hires_gives_empty_2021_tables(warehouse):
    load(warehouse, hires_at(datetime(2020, 5, 5), datetime(2022, 11, 11)))
    counts = metrics.publish_metrics(warehouse)
    assert counts["quarterly_hires_2021"] == 0
    assert counts["departments_above_mean_2021"] == 0
    assert [row[0] for row in metrics.read_metric(warehouse, "hires_by_quarter")] == [2020, 2022]


def test_an_empty_warehouse_publishes_empty_tables(warehouse):
    counts = metrics.publish_metrics(warehouse)
    assert counts == {name: 0 for name in metrics.METRIC_NAMES}
    for name in ("quarterly_hires_2021", "departments_above_mean_2021"):
        rows = metrics.read_metric(warehouse, name)
        text = metrics.format_table(name, metrics.METRICS[name].column_names, rows)
        assert f"{name} (0 rows)" in text


def test_publishing_replaces_the_previous_rows(warehouse):
    load(warehouse, hires_at(datetime(2021, 1, 5)))
    metrics.publish_metrics(warehouse)
    load(warehouse, hires_at(datetime(2021, 8, 5), first_id=2))  # a second hire, in Q3
    metrics.publish_metrics(warehouse)
    metrics.publish_metrics(warehouse)  # twice: the same tables
    assert metrics.read_metric(warehouse, "quarterly_hires_2021") == [("Alpha", "Analyst", 1, 0, 1, 0)]


def test_ties_on_hired_are_ordered_by_department(warehouse):
    hires = (
        hires_at(*[datetime(2021, 4, d) for d in (1, 2, 3)], department=2, first_id=1)
        + hires_at(*[datetime(2021, 4, d) for d in (4, 5, 6)], department=1, first_id=10)
        + hires_at(datetime(2021, 4, 7), department=3, first_id=20)
    )
    load(warehouse, hires)
    metrics.publish_metrics(warehouse)
    assert metrics.read_metric(warehouse, "departments_above_mean_2021") == [(1, "Alpha", 3), (2, "Beta", 3)]


@pytest.mark.parametrize("name", ["hires_by_quarter", "no_such_table"])
def test_read_metric_knows_only_the_metric_tables(sqlite_warehouse, name):
    if name in metrics.METRICS:
        metrics.publish_metrics(sqlite_warehouse)
        assert metrics.read_metric(sqlite_warehouse, name) == []
    else:
        with pytest.raises(KeyError):
            metrics.read_metric(sqlite_warehouse, name)
