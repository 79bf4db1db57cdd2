"""SQL derived from the table contracts, by dialect name: thin entry points to the adapters
(``hr_pipeline.warehouse.dialects``), which own types, quoting and create-if-missing."""

from __future__ import annotations

from hr_pipeline.contract.tables import Column, TableContract
from hr_pipeline.warehouse.dialects import DIALECTS, Dialect, adapter_for

__all__ = [
    "DIALECTS",
    "Dialect",
    "column_list",
    "create_table",
    "create_table_if_missing",
    "placeholders",
    "quote",
    "sql_type",
    "upsert_from_staging",
    "upsert_values",
]


def quote(identifier: str, dialect: Dialect) -> str:
    return adapter_for(dialect).quote(identifier)


def column_list(contract: TableContract, dialect: Dialect) -> str:
    return adapter_for(dialect).column_list(contract)


def sql_type(column: Column, dialect: Dialect) -> str:
    return adapter_for(dialect).column_type(column)


def create_table(contract: TableContract, dialect: Dialect, table_name: str | None = None) -> str:
    """CREATE TABLE for the contract, under its own name or ``table_name``."""
    return adapter_for(dialect).create_table(contract, table_name)


def create_table_if_missing(contract: TableContract, dialect: Dialect) -> str:
    return adapter_for(dialect).create_contract_table_if_missing(contract)


def placeholders(count: int, dialect: Dialect) -> str:
    return adapter_for(dialect).placeholders(count)


def upsert_from_staging(contract: TableContract, dialect: Dialect, staging_table: str) -> str:
    """Insert-or-replace every row of ``staging_table`` into the contract's table, by key."""
    adapter = adapter_for(dialect)
    return adapter.upsert_from_staging(contract, adapter.table(staging_table))


def upsert_values(contract: TableContract, dialect: Dialect) -> str:
    """Insert-or-replace one row given as parameters."""
    return adapter_for(dialect).upsert_values(contract.name, contract.column_names, [contract.key])
