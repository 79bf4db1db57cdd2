"""Fixtures of the unit tests (no service)."""

from __future__ import annotations

import json

import pytest

# Azure SQL cannot run here: these tests point the warehouse connection at an unreachable SQL
# Server and give the Warehouse a recording fake connection instead.
UNREACHABLE_AZURE_SQL = {
    "conn_type": "mssql",
    "host": "sqlserver.invalid",
    "login": "sa",
    "password": "x",
    "schema": "hr",
    "port": 1433,
}


@pytest.fixture
def azure_sql_connection(monkeypatch) -> None:
    """The warehouse connection names an (unreachable) Azure SQL database."""
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(UNREACHABLE_AZURE_SQL))
