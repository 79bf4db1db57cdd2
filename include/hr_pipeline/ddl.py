"""SQL derived from the table contracts, for each warehouse dialect.

Identifiers come only from contracts (never from a user's string) and are quoted for the dialect.
There are no database-level FOREIGN KEY constraints: SQL Server has no deferrable constraints, so a
restore that swaps a referenced table's rows inside one transaction would be refused mid-way. The
pipeline checks references itself (validation on ingest, a pre-check on restore).
"""

from __future__ import annotations

from typing import Literal

from hr_pipeline.contracts import Column, ColumnType, TableContract, STRING_MAX_LENGTH

Dialect = Literal["sqlite", "postgres", "mssql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres", "mssql")

# Timestamps are stored as UTC without a zone on every dialect: SQL Server's DATETIME2 has none,
# and quarters are of the UTC date whatever the session's time zone is. SQLite has no timestamp
# type: its column holds fixed-width ISO text that strftime() reads and that sorts correctly.
_SQL_TYPES: dict[Dialect, dict[ColumnType, str]] = {
    "sqlite": {
        ColumnType.INTEGER: "INTEGER",
        ColumnType.STRING: "TEXT",
        ColumnType.TIMESTAMP: "TEXT",
    },
    "postgres": {
        ColumnType.INTEGER: "INTEGER",
        ColumnType.STRING: f"VARCHAR({STRING_MAX_LENGTH})",
        ColumnType.TIMESTAMP: "TIMESTAMP(6)",
    },
    "mssql": {
        ColumnType.INTEGER: "INT",
        ColumnType.STRING: f"NVARCHAR({STRING_MAX_LENGTH})",
        ColumnType.TIMESTAMP: "DATETIME2(6)",
    },
}


def quote(identifier: str, dialect: Dialect) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"Refusing identifier {identifier!r}: contracts use [A-Za-z0-9_] only")
    if dialect == "mssql":
        return f"[{identifier}]"
    return f'"{identifier}"'


def column_list(contract: TableContract, dialect: Dialect) -> str:
    return ", ".join(quote(name, dialect) for name in contract.column_names)


def sql_type(column: Column, dialect: Dialect) -> str:
    return _SQL_TYPES[dialect][column.type]


def create_table(contract: TableContract, dialect: Dialect, table_name: str | None = None) -> str:
    """CREATE TABLE for the contract, under its own name or ``table_name`` (staging tables)."""
    name = quote(table_name or contract.name, dialect)
    columns = [
        f"{quote(column.name, dialect)} {sql_type(column, dialect)} NOT NULL"
        for column in contract.columns
    ]
    columns.append(f"PRIMARY KEY ({quote(contract.key, dialect)})")
    return f"CREATE TABLE {name} (\n    " + ",\n    ".join(columns) + "\n)"


def create_table_if_missing(contract: TableContract, dialect: Dialect) -> str:
    create = create_table(contract, dialect)
    if dialect == "mssql":
        return (
            f"IF OBJECT_ID(N'dbo.{contract.name}', N'U') IS NULL\n"
            + create.replace("CREATE TABLE ", "CREATE TABLE dbo.", 1)
        )
    return create.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)


def placeholders(count: int, dialect: Dialect) -> str:
    marker = "?" if dialect == "sqlite" else "%s"
    return ", ".join([marker] * count)


def upsert_from_staging(contract: TableContract, dialect: Dialect, staging_table: str) -> str:
    """Insert-or-replace every row of ``staging_table`` into the contract's table, by key."""
    target = quote(contract.name, dialect)
    staging = staging_table if staging_table.startswith("#") else quote(staging_table, dialect)
    key = quote(contract.key, dialect)
    columns = column_list(contract, dialect)
    non_key = [quote(name, dialect) for name in contract.column_names if name != contract.key]
    if dialect == "mssql":
        updates = ", ".join(f"target.{c} = source.{c}" for c in non_key)
        source_values = ", ".join(f"source.{quote(n, dialect)}" for n in contract.column_names)
        return (
            f"MERGE INTO dbo.{target} WITH (HOLDLOCK) AS target\n"
            f"USING {staging} AS source ON target.{key} = source.{key}\n"
            f"WHEN MATCHED THEN UPDATE SET {updates}\n"
            f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({source_values});"
        )
    updates = ", ".join(f"{c} = excluded.{c}" for c in non_key)
    # "WHERE true" lets SQLite's parser tell ON CONFLICT from a join constraint.
    return (
        f"INSERT INTO {target} ({columns})\n"
        f"SELECT {columns} FROM {staging} WHERE true\n"
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def upsert_values(contract: TableContract, dialect: Dialect) -> str:
    """Insert-or-replace one row given as parameters (SQLite's executemany path)."""
    if dialect == "mssql":
        raise ValueError("SQL Server upserts go through a staging table and MERGE")
    target = quote(contract.name, dialect)
    key = quote(contract.key, dialect)
    non_key = [quote(name, dialect) for name in contract.column_names if name != contract.key]
    updates = ", ".join(f"{c} = excluded.{c}" for c in non_key)
    return (
        f"INSERT INTO {target} ({column_list(contract, dialect)}) "
        f"VALUES ({placeholders(len(contract.columns), dialect)}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )
