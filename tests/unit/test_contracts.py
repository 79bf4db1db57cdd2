"""The table contracts, and what is derived from them."""

import re

import pytest

from hr_pipeline.contract import tables as contracts
from hr_pipeline.contract.tables import CONTRACTS, TABLE_NAMES, get_contract
from hr_pipeline.warehouse.dialects import DIALECTS, MSSQL, POSTGRES, SQLITE, adapter_for


def test_the_contracts_tables_and_columns_in_csv_order():
    assert TABLE_NAMES == ("departments", "jobs", "hired_employees")
    assert CONTRACTS["departments"].column_names == ("id", "department")
    assert CONTRACTS["jobs"].column_names == ("id", "job")
    assert CONTRACTS["hired_employees"].column_names == ("id", "name", "datetime", "department_id", "job_id")


def test_load_order_puts_referenced_tables_first():
    for position, contract in enumerate(CONTRACTS.values()):
        for column in contract.foreign_keys:
            assert TABLE_NAMES.index(column.references) < position


def test_unknown_table_is_refused_with_the_valid_names():
    with pytest.raises(contracts.UnknownTableError, match="departments, jobs, hired_employees"):
        get_contract("employees; DROP TABLE jobs")


def test_referencing_columns():
    assert [(c.name, col.name) for c, col in contracts.referencing_columns("jobs")] == [
        ("hired_employees", "job_id")
    ]
    assert contracts.referencing_columns("hired_employees") == []


def test_avro_schema_uses_logical_timestamps():
    schema = contracts.avro_schema(CONTRACTS["hired_employees"])
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    assert fields["datetime"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields["id"] == "int"
    assert fields["name"] == "string"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_ddl_has_every_column_and_the_key(dialect):
    adapter = adapter_for(dialect)
    sql = adapter.create_contract_table_if_missing(CONTRACTS["hired_employees"])
    for name in CONTRACTS["hired_employees"].column_names:
        assert adapter.quote(name) in sql
    assert f"PRIMARY KEY ({adapter.quote('id')})" in sql


def test_ddl_types_per_dialect():
    contract = CONTRACTS["hired_employees"]
    assert "TIMESTAMP(6)" in POSTGRES.create_table(contract)
    assert "DATETIME2(6)" in MSSQL.create_table(contract)
    assert "NVARCHAR(255)" in MSSQL.create_table(contract)  # non-ASCII names


def test_identifiers_outside_the_contract_alphabet_are_refused():
    hostile = 'x"; DROP TABLE jobs; --'
    refusal = f"Refusing identifier {hostile!r}: contracts use [A-Za-z0-9_] only"
    with pytest.raises(ValueError, match=f"^{re.escape(refusal)}$"):
        POSTGRES.quote(hostile)


def test_ddl_runs_on_sqlite(tmp_path):
    import sqlite3

    connection = sqlite3.connect(tmp_path / "w.db")
    for contract in CONTRACTS.values():
        connection.execute(SQLITE.create_contract_table_if_missing(contract))
        connection.execute(SQLITE.create_contract_table_if_missing(contract))  # idempotent
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == set(TABLE_NAMES)
