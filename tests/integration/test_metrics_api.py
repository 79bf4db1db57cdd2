"""The HTTP API's metric endpoints on a published warehouse (SQLite and PostgreSQL): each serves
its table's rows with the columns and in the order of the metric's definition. Authentication is
answered by a stand-in user here; the stack tests run it for real."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from hr_pipeline import metrics
from hr_pipeline.api import app as http_api
from hr_pipeline.contract.tables import CONTRACTS


class _User:
    def get_name(self) -> str:
        return "tester"


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(http_api, "_authorize", lambda *args, **kwargs: None)
    application = http_api.create_app()
    application.dependency_overrides[http_api.airflow_user] = _User
    return TestClient(application)


def test_every_served_metric_reads_its_published_table_in_its_order(warehouse, client):
    # 2021: Alpha 3 hires, Beta 3, Gamma 1 -> mean 7/3, Alpha and Beta above it (tied: by name).
    hires = [
        (1, "A", datetime(2021, 1, 5), 1, 2),
        (2, "B", datetime(2021, 5, 5), 1, 1),
        (3, "C", datetime(2021, 11, 5), 1, 1),
        (4, "D", datetime(2021, 2, 5), 2, 1),
        (5, "E", datetime(2021, 8, 5), 2, 1),
        (6, "F", datetime(2021, 8, 6), 2, 1),
        (7, "G", datetime(2021, 3, 5), 3, 2),
        (8, "H", datetime(2020, 3, 5), 3, 2),
    ]
    with warehouse.transaction() as connection:
        warehouse.upsert_batch(
            connection, CONTRACTS["departments"], [(1, "Beta"), (2, "Alpha"), (3, "Gamma")]
        )
        warehouse.upsert_batch(connection, CONTRACTS["jobs"], [(1, "Baker"), (2, "Analyst")])
        warehouse.upsert_batch(connection, CONTRACTS["hired_employees"], hires)
    metrics.publish_metrics(warehouse)

    quarterly = client.get("/api/metrics/quarterly-hires-2021")
    assert quarterly.status_code == 200, quarterly.text
    assert quarterly.json() == [
        {"department": "Alpha", "job": "Baker", "q1": 1, "q2": 0, "q3": 2, "q4": 0},
        {"department": "Beta", "job": "Analyst", "q1": 1, "q2": 0, "q3": 0, "q4": 0},
        {"department": "Beta", "job": "Baker", "q1": 0, "q2": 1, "q3": 0, "q4": 1},
        {"department": "Gamma", "job": "Analyst", "q1": 1, "q2": 0, "q3": 0, "q4": 0},
    ]
    above = client.get("/api/metrics/departments-above-mean-2021")
    assert above.status_code == 200, above.text
    assert above.json() == [
        {"id": 2, "department": "Alpha", "hired": 3},
        {"id": 1, "department": "Beta", "hired": 3},
    ]
    for table in http_api.SERVED_METRICS:
        response = client.get(f"/api/metrics/{table.replace('_', '-')}")
        rows = [tuple(row.values()) for row in response.json()]
        assert rows == metrics.read_metric(warehouse, table)
        assert all(tuple(row) == metrics.METRICS[table].column_names for row in response.json())
