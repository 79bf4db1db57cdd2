"""The one definition of each table: columns, types, key, foreign keys, rules.

Everything else is derived from ``CONTRACTS``: the DDL of each SQL dialect (the adapters of
``warehouse/dialects``), the AVRO schema of backups (``avro_schema``), the Great Expectations suite
(``ingest/expectations.py``), and the
choices of the ``table_name`` param in the trigger forms (``TABLE_NAMES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ColumnType(str, Enum):
    INTEGER = "integer"
    STRING = "string"
    TIMESTAMP = "timestamp"  # an ISO 8601 UTC instant in the CSV, e.g. 2021-11-07T02:48:42Z


# Signed 32-bit: the INTEGER of SQLite, PostgreSQL and SQL Server alike. A value outside it is a
# row a user can fix, not a database error that fails a whole batch.
INTEGER_MIN = -(2**31)
INTEGER_MAX = 2**31 - 1
STRING_MAX_LENGTH = 255


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    references: str | None = None  # name of the table whose key this column must exist in


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    key: str = "id"
    # Bumped on any change of columns or types; written into every backup's header so a restore
    # can refuse a backup written under another contract.
    version: int = 1

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def foreign_keys(self) -> tuple[Column, ...]:
        return tuple(column for column in self.columns if column.references)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")


DEPARTMENTS = TableContract(
    name="departments",
    columns=(
        Column("id", ColumnType.INTEGER),
        Column("department", ColumnType.STRING),
    ),
)

JOBS = TableContract(
    name="jobs",
    columns=(
        Column("id", ColumnType.INTEGER),
        Column("job", ColumnType.STRING),
    ),
)

HIRED_EMPLOYEES = TableContract(
    name="hired_employees",
    columns=(
        Column("id", ColumnType.INTEGER),
        Column("name", ColumnType.STRING),
        Column("datetime", ColumnType.TIMESTAMP),
        Column("department_id", ColumnType.INTEGER, references="departments"),
        Column("job_id", ColumnType.INTEGER, references="jobs"),
    ),
)

# In load order: a table comes after the tables it references.
CONTRACTS: dict[str, TableContract] = {
    contract.name: contract for contract in (DEPARTMENTS, JOBS, HIRED_EMPLOYEES)
}
TABLE_NAMES: tuple[str, ...] = tuple(CONTRACTS)


class UnknownTableError(ValueError):
    pass


def get_contract(table_name: str) -> TableContract:
    """The contract of ``table_name``; the only way a user's table name reaches SQL."""
    try:
        return CONTRACTS[table_name]
    except (KeyError, TypeError):
        raise UnknownTableError(
            f"Unknown table {table_name!r}: expected one of {', '.join(TABLE_NAMES)}"
        ) from None


def referencing_columns(table_name: str) -> list[tuple[TableContract, Column]]:
    """Columns of other tables whose values must exist in ``table_name``'s key."""
    return [
        (contract, column)
        for contract in CONTRACTS.values()
        for column in contract.foreign_keys
        if column.references == table_name
    ]


def avro_schema(contract: TableContract) -> dict:
    """AVRO record schema of a table's backup; timestamps as timestamp-micros, not strings."""
    avro_types = {
        ColumnType.INTEGER: "int",
        ColumnType.STRING: "string",
        ColumnType.TIMESTAMP: {"type": "long", "logicalType": "timestamp-micros"},
    }
    return {
        "type": "record",
        "name": contract.name,
        "namespace": "hr_pipeline.backup.backups",
        "doc": f"Backup of table {contract.name}, contract version {contract.version}",
        "fields": [{"name": column.name, "type": avro_types[column.type]} for column in contract.columns],
    }


# -- the DAGs' table params, from the contracts ------------------------------------------------------


def table_param(description: str):
    """A DAG param naming one contract table (the first by default)."""
    from airflow.sdk import Param

    return Param(
        TABLE_NAMES[0], type="string", enum=list(TABLE_NAMES), title="Table", description=description
    )


def tables_param(description: str):
    """A DAG param naming some of the contract tables (all by default), each once."""
    from airflow.sdk import Param

    return Param(
        list(TABLE_NAMES),
        type="array",
        items={"type": "string", "enum": list(TABLE_NAMES)},
        uniqueItems=True,
        minItems=1,
        title="Tables",
        description=description,
    )
