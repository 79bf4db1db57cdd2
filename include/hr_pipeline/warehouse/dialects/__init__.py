"""One adapter per warehouse dialect (SQLite, PostgreSQL, SQL Server): the only place that knows
which database is behind the ``warehouse`` connection. See ``base.Adapter`` for the operations."""

from __future__ import annotations

from typing import Literal

from hr_pipeline.warehouse.dialects.base import (
    Adapter,
    CsvBatch,
    ReferenceCheck,
    ReplacePlan,
    Step,
    WarehouseError,
)
from hr_pipeline.warehouse.dialects.mssql import MssqlAdapter
from hr_pipeline.warehouse.dialects.postgres import PostgresAdapter
from hr_pipeline.warehouse.dialects.sqlite import SqliteAdapter

Dialect = Literal["sqlite", "postgres", "mssql"]
ADAPTERS: dict[str, Adapter] = {a.name: a for a in (SqliteAdapter(), PostgresAdapter(), MssqlAdapter())}
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres", "mssql")
SQLITE, POSTGRES, MSSQL = ADAPTERS["sqlite"], ADAPTERS["postgres"], ADAPTERS["mssql"]


def adapter_for(dialect: str | Adapter) -> Adapter:
    """The adapter of a dialect name (an adapter is returned as it is)."""
    return dialect if isinstance(dialect, Adapter) else ADAPTERS[dialect]


__all__ = [
    "ADAPTERS",
    "DIALECTS",
    "MSSQL",
    "POSTGRES",
    "SQLITE",
    "Adapter",
    "CsvBatch",
    "Dialect",
    "ReferenceCheck",
    "ReplacePlan",
    "Step",
    "WarehouseError",
    "adapter_for",
]
