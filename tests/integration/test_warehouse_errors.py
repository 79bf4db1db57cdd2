"""Each dialect adapter maps its driver's errors to the warehouse's typed errors: refused data
(retrying cannot help) apart from an unreachable warehouse (a retry may); on real SQLite and
PostgreSQL, and on pymssql's own exception classes (no SQL Server runs here)."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg2
import pymssql
import pytest

from hr_pipeline.warehouse.dialects import adapter_for
from hr_pipeline.warehouse.errors import WarehouseDataError, WarehouseUnavailableError


def test_a_duplicate_key_is_refused_data_on_a_real_warehouse(warehouse):
    with warehouse.transaction() as connection:
        connection.cursor().execute("INSERT INTO jobs (id, job) VALUES (1, 'Nurse')")
    with pytest.raises(WarehouseDataError, match="IntegrityError|UniqueViolation"):
        with warehouse.transaction() as connection:
            connection.cursor().execute("INSERT INTO jobs (id, job) VALUES (1, 'Cook')")
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        assert cursor.fetchall() == [(1, "Nurse")], "the refused insert rolled back"


def test_a_missing_table_is_not_refused_data(warehouse):
    with pytest.raises(Exception, match="no_such_table|no such table") as raised:
        with warehouse.transaction() as connection:
            connection.cursor().execute("SELECT * FROM no_such_table")
    assert not isinstance(raised.value, WarehouseDataError)


@pytest.mark.parametrize(
    ("dialect", "error", "kind"),
    [
        ("sqlite", sqlite3.IntegrityError("UNIQUE constraint failed: jobs.id"), WarehouseDataError),
        ("sqlite", sqlite3.OperationalError("database is locked"), WarehouseUnavailableError),
        ("postgres", psycopg.errors.UniqueViolation("duplicate key"), WarehouseDataError),
        ("postgres", psycopg.errors.NumericValueOutOfRange("integer out of range"), WarehouseDataError),
        ("postgres", psycopg.OperationalError("connection refused"), WarehouseUnavailableError),
        ("postgres", psycopg2.IntegrityError("duplicate key"), WarehouseDataError),
        ("postgres", psycopg2.OperationalError("server closed the connection"), WarehouseUnavailableError),
        ("mssql", pymssql.IntegrityError(2627, b"Violation of PRIMARY KEY constraint"), WarehouseDataError),
        ("mssql", pymssql.OperationalError(20009, b"Unable to connect"), WarehouseUnavailableError),
    ],
)
def test_each_driver_error_has_its_type(dialect, error, kind):
    typed = adapter_for(dialect).typed_error(error)
    assert type(typed) is kind
    assert str(typed).startswith(type(error).__name__)


def test_the_cause_of_an_error_is_looked_at_too():
    error = RuntimeError("the load failed")
    error.__cause__ = sqlite3.IntegrityError("NOT NULL constraint failed: jobs.job")
    assert type(adapter_for("sqlite").typed_error(error)) is WarehouseDataError


def test_an_error_that_is_not_the_drivers_is_left_alone():
    assert adapter_for("postgres").typed_error(ValueError("a bug")) is None
    with pytest.raises(ValueError, match="a bug"):
        with adapter_for("postgres").errors_typed():
            raise ValueError("a bug")
