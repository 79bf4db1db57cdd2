"""The metric tables analysts read, published by the ``publish_metrics`` DAG.

One definition per metric: ``<metric>.sql`` beside this file, a PostgreSQL query an analyst can read
and run. Each dialect's SQL is derived from it with sqlglot; the one thing sqlglot does not
translate for SQLite, ``EXTRACT(YEAR | QUARTER FROM ts)`` on SQLite's ISO-text timestamps, is
rewritten here into substrings of that fixed-width text. The column names and types of each
published table are declared in ``METRIC_TABLES`` (docs/CONTRACT.md, Metric tables) and checked against the
query's SELECT list.

Publishing never shows a reader an empty or half-written table:

1. ``build``: every table is rebuilt aside as ``<name>__next``, from one snapshot of the source
   tables (one transaction; REPEATABLE READ on PostgreSQL, SERIALIZABLE on SQL Server).
2. data-quality checks (common-sql ``SQLColumnCheckOperator`` / ``SQLCheckOperator``) run on the
   ``__next`` tables; a failing check stops the run here and the published tables stay as they were.
3. ``swap``: in ONE transaction, each published table's rows are replaced by its ``__next`` rows
   (``DELETE`` + ``INSERT ... SELECT``) and the ``__next`` table is dropped. Readers keep seeing the
   previous rows until the commit (MVCC on PostgreSQL, WAL on SQLite), and grants or views on the
   published tables survive, which a DROP + RENAME swap would break.

Tables have no order: rows are inserted in the documented order (docs/CONTRACT.md), and readers get it with the
``ORDER BY`` of each metric's query (``MetricTable.order_by``; ``reader_query`` writes it out).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hr_pipeline.runtime.settings import WAREHOUSE_CONN_ID
from hr_pipeline.warehouse.dialects import Adapter, Dialect, adapter_for

log = logging.getLogger(__name__)

METRICS_DIR = Path(__file__).resolve().parent
CHECKS_DIR = METRICS_DIR / "checks"
SOURCE_DIALECT = "postgres"  # the dialect the .sql files are written in
STAGING_SUFFIX = "__next"

INTEGER, STRING, FLOAT = "integer", "string", "float"
_ADAPTER_KINDS = {INTEGER: "integer", STRING: "text", FLOAT: "float"}  # kinds of dialects.base


class MetricDefinitionError(ValueError):
    """A metric's .sql file disagrees with its declared columns (a developer's error)."""


class MetricCheckError(RuntimeError):
    """A data-quality check failed on the rebuilt tables: nothing was published."""


@dataclass(frozen=True)
class MetricTable:
    """One published table: its documented columns (name, type; docs/CONTRACT.md), key columns and count columns."""

    name: str
    columns: tuple[tuple[str, str], ...]
    keys: tuple[str, ...]
    counts: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def staging_name(self) -> str:
        return self.name + STAGING_SUFFIX

    @property
    def sql_path(self) -> Path:
        return METRICS_DIR / f"{self.name}.sql"

    @cached_property
    def sql(self) -> str:
        """The metric's definition, as written in its .sql file."""
        return self.sql_path.read_text(encoding="utf-8")

    @cached_property
    def order_by(self) -> tuple[tuple[str, bool], ...]:
        """The reading order, from the query's ORDER BY: (column, descending) pairs."""
        from sqlglot import exp

        query = _parse(self.sql)
        order = query.args.get("order")
        if order is None:
            raise MetricDefinitionError(f"{self.sql_path.name}: the query needs an ORDER BY")
        pairs = []
        for ordered in order.expressions:
            if not isinstance(ordered.this, exp.Column) or ordered.this.name not in self.column_names:
                raise MetricDefinitionError(
                    f"{self.sql_path.name}: ORDER BY {ordered.this.sql()} is not one of the "
                    f"output columns {', '.join(self.column_names)}"
                )
            pairs.append((ordered.this.name, bool(ordered.args.get("desc"))))
        return tuple(pairs)


def _counts(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, INTEGER) for name in names)


QUARTERS = ("q1", "q2", "q3", "q4")

# In build order: the 2021 tables are read from the all-years tables built before them.
METRIC_TABLES: tuple[MetricTable, ...] = (
    MetricTable(
        name="hires_by_quarter",
        columns=(("year", INTEGER), ("department", STRING), ("job", STRING), *_counts(*QUARTERS)),
        keys=("year", "department", "job"),
        counts=QUARTERS,
    ),
    MetricTable(
        name="departments_above_mean",
        columns=(
            ("year", INTEGER),
            ("id", INTEGER),
            ("department", STRING),
            ("hired", INTEGER),
            ("mean", FLOAT),
        ),
        keys=("year", "id", "department"),
        counts=("hired",),
    ),
    MetricTable(
        name="quarterly_hires_2021",
        columns=(("department", STRING), ("job", STRING), *_counts(*QUARTERS)),
        keys=("department", "job"),
        counts=QUARTERS,
    ),
    MetricTable(
        name="departments_above_mean_2021",
        columns=(("id", INTEGER), ("department", STRING), ("hired", INTEGER)),
        keys=("id", "department"),
        counts=("hired",),
    ),
)
METRICS: dict[str, MetricTable] = {metric.name: metric for metric in METRIC_TABLES}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)

# Checks across tables, one .sql file each in checks/: a query returning one row of 1 (holds) / 0.
CHECK_NAMES: tuple[str, ...] = tuple(sorted(path.stem for path in CHECKS_DIR.glob("*.sql")))
CHECK_TASK_IDS: tuple[str, ...] = tuple(f"check_{name}" for name in CHECK_NAMES)


# -- rendering ---------------------------------------------------------------------------------


def _parse(sql: str):
    import sqlglot

    statements = [s for s in sqlglot.parse(sql, read=SOURCE_DIALECT) if s is not None]
    if len(statements) != 1:
        raise MetricDefinitionError(f"Expected one SQL statement, found {len(statements)}")
    return statements[0]


def _sqlite_date_part(node):
    """EXTRACT(YEAR|QUARTER FROM ts) -> integers cut from SQLite's fixed-width ISO text
    (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, see ``instants.format_instant``).

    Not ``strftime()``: SQLite's date functions round the fraction to milliseconds, so the last
    half millisecond of 9999-12-31 (a year the contract accepts) overflows and reads as NULL.
    """
    import sqlglot
    from sqlglot import exp

    if not isinstance(node, exp.Extract):
        return node
    unit = node.this.name.upper()
    templates = {
        "YEAR": "CAST(SUBSTR(__ts__, 1, 4) AS INTEGER)",
        "QUARTER": "((CAST(SUBSTR(__ts__, 6, 2) AS INTEGER) + 2) / 3)",
        "MONTH": "CAST(SUBSTR(__ts__, 6, 2) AS INTEGER)",
    }
    if unit not in templates:
        raise MetricDefinitionError(f"EXTRACT({unit} ...) has no SQLite translation here")
    replacement = sqlglot.parse_one(templates[unit], read="sqlite")
    for column in replacement.find_all(exp.Column):
        if column.name == "__ts__":
            column.replace(node.expression.copy())
    for cut in list(replacement.find_all(exp.Substring)):
        # SUBSTR, which every SQLite has (sqlglot writes SUBSTRING: SQLite 3.34 and later only)
        cut.replace(
            exp.Anonymous(this="SUBSTR", expressions=[cut.this, cut.args["start"], cut.args["length"]])
        )
    return replacement


def _read_staged(expression):
    """Point every reference to a metric table at its rebuilt-aside ``__next`` table."""
    from sqlglot import exp

    for table in expression.find_all(exp.Table):
        if table.name in METRICS and not table.args.get("db"):
            table.set("this", exp.to_identifier(METRICS[table.name].staging_name))
    return expression


def render(sql_or_expression, dialect: Dialect | Adapter, staged: bool = False) -> str:
    """One statement written in PostgreSQL, as ``dialect`` runs it.

    ``staged``: metric tables it reads are the ``__next`` ones being rebuilt (build and checks).
    """
    from sqlglot import exp

    expression = (
        sql_or_expression.copy()
        if isinstance(sql_or_expression, exp.Expression)
        else _parse(sql_or_expression)
    )
    if staged:
        expression = _read_staged(expression)
    adapter = adapter_for(dialect)
    if adapter.timestamps_as_text:
        expression = expression.transform(_sqlite_date_part)
    # Comments stay in the .sql files: sqlglot would move them about (T-SQL hoists CTEs).
    return expression.sql(dialect=adapter.sqlglot_dialect, identify=True, comments=False)


def metric_query(metric: MetricTable, dialect: Dialect | Adapter, staged: bool = False) -> str:
    """The metric's SELECT, as ``dialect`` runs it (what an analyst would run by hand)."""
    return render(_checked_query(metric), dialect, staged=staged)


def _checked_query(metric: MetricTable):
    query = _parse(metric.sql)
    if tuple(query.named_selects) != metric.column_names:
        raise MetricDefinitionError(
            f"{metric.sql_path.name} selects {', '.join(query.named_selects)}; the table "
            f"{metric.name} has the columns {', '.join(metric.column_names)}"
        )
    return query


def _insert(table_name: str, metric: MetricTable, query):
    """INSERT INTO table (columns) <query>; built by sqlglot so T-SQL gets its CTEs first."""
    from sqlglot import exp

    return exp.insert(query, exp.to_table(table_name), columns=list(metric.column_names))


def _order_by_sql(metric: MetricTable) -> str:
    return ", ".join(f"{name} DESC" if descending else name for name, descending in metric.order_by)


def reader_query(metric: MetricTable, dialect: Dialect | Adapter) -> str:
    """How to read a published table in its documented order (docs/CONTRACT.md)."""
    columns = ", ".join(metric.column_names)
    return render(f"SELECT {columns} FROM {metric.name} ORDER BY {_order_by_sql(metric)}", dialect)


def create_table(
    metric: MetricTable, dialect: Dialect | Adapter, table_name: str, if_missing: bool = False
) -> str:
    adapter = adapter_for(dialect)
    columns = [
        f"{adapter.quote(name)} {adapter.sql_type(_ADAPTER_KINDS[kind])}" for name, kind in metric.columns
    ]
    if if_missing:
        return adapter.create_if_missing(table_name, columns)
    return adapter.create_statement(f"CREATE TABLE {adapter.quote(table_name)}", columns)


@dataclass(frozen=True)
class PublishPlan:
    """Every statement of one publish, for one dialect."""

    dialect: Dialect
    build: tuple[str, ...]
    checks: Mapping[str, str]
    swap: tuple[str, ...]

    def as_xcom(self) -> dict[str, Any]:
        return {"build": list(self.build), "swap": list(self.swap), **dict(self.checks)}

    @property
    def statements(self) -> tuple[str, ...]:
        return (*self.build, *self.checks.values(), *self.swap)


def publish_plan(dialect: Dialect | Adapter) -> PublishPlan:
    adapter = adapter_for(dialect)
    quote = adapter.quote
    build = adapter.begin_statements(adapter.publish_isolation)
    swap = adapter.begin_statements(None)
    for metric in METRIC_TABLES:
        staging = metric.staging_name
        staged_rows = _parse(
            f"SELECT {', '.join(metric.column_names)} FROM {staging} ORDER BY {_order_by_sql(metric)}"
        )
        build += [
            f"DROP TABLE IF EXISTS {quote(staging)}",
            create_table(metric, adapter, staging),
            render(_insert(staging, metric, _checked_query(metric)), adapter, staged=True),
        ]
        swap += [
            create_table(metric, adapter, metric.name, if_missing=True),
            f"DELETE FROM {quote(metric.name)}",
            render(_insert(metric.name, metric, staged_rows), adapter),
            f"DROP TABLE {quote(staging)}",
        ]
    checks = {
        f"check_{name}": render(
            (CHECKS_DIR / f"{name}.sql").read_text(encoding="utf-8"), adapter, staged=True
        )
        for name in CHECK_NAMES
    }
    return PublishPlan(adapter.name, tuple(build), checks, tuple(swap))


# -- data-quality checks -----------------------------------------------------------------------


def column_checks(metric: MetricTable) -> dict[str, dict[str, Any]]:
    """``SQLColumnCheckOperator`` mapping: no NULL key, no NULL or negative count.

    A fresh dict on every call: the operator writes its results into the mapping.
    """
    mapping: dict[str, dict[str, Any]] = {}
    for name, kind in metric.columns:
        checks: dict[str, Any] = {"null_check": {"equal_to": 0}}
        if name in metric.counts:
            checks["min"] = {"geq_to": 0}
        if name in metric.keys or name in metric.counts or kind == FLOAT:
            mapping[name] = checks
    return mapping


def data_quality_checks(check_sql: Mapping[str, Any], conn_id: str = WAREHOUSE_CONN_ID) -> list:
    """The common-sql operators that check the rebuilt-aside tables before they are swapped in.

    ``check_sql``: the SQL of each cross-table check by task id (``PublishPlan.checks``), or, in
    the DAG, the XCom of the task that rendered it for the warehouse's dialect. A data-quality
    failure is not transient: these tasks are not retried.
    """
    from airflow.providers.common.sql.operators.sql import SQLCheckOperator, SQLColumnCheckOperator

    operators: list = [
        SQLColumnCheckOperator(
            task_id=f"check_{metric.name}_columns",
            conn_id=conn_id,
            table=metric.staging_name,
            column_mapping=column_checks(metric),
            retries=0,
        )
        for metric in METRIC_TABLES
    ]
    operators += [
        SQLCheckOperator(task_id=task_id, conn_id=conn_id, sql=sql, retries=0)
        for task_id, sql in check_sql.items()
    ]
    return operators


# -- publishing outside Airflow (tests, benchmark): the same statements and operators -------------


def run_statements(warehouse, statements: Sequence[str]) -> None:
    """Run ``statements`` in one transaction, as ``SQLExecuteQueryOperator`` does (``hook.run``)."""
    warehouse.hook.run(list(statements), autocommit=False)


def run_checks(warehouse, plan: PublishPlan) -> None:
    """Run every data-quality check on the ``__next`` tables; raise on the first failure."""
    for operator in data_quality_checks(plan.checks, conn_id=warehouse.conn_id):
        try:
            operator.execute(context={})
        except Exception as error:
            raise MetricCheckError(f"Data-quality check {operator.task_id} failed: {error}") from error


def publish_metrics(warehouse) -> dict[str, int]:
    """Rebuild aside, check, swap in. Returns the row count of each published table."""
    plan = publish_plan(warehouse.adapter)
    run_statements(warehouse, plan.build)
    run_checks(warehouse, plan)
    run_statements(warehouse, plan.swap)
    counts = published_row_counts(warehouse)
    log.info("Published %s", ", ".join(f"{name}: {n} rows" for name, n in counts.items()))
    return counts


# -- reading the published tables ----------------------------------------------------------------


def published_row_counts(warehouse) -> dict[str, int]:
    """Rows of each published table, read in one transaction."""
    counts = {}
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        for metric in METRIC_TABLES:
            cursor.execute(warehouse.adapter.count_rows(metric.name))
            counts[metric.name] = int(cursor.fetchone()[0])
    return counts


def read_metric(warehouse, name: str) -> list[tuple]:
    """A published table's rows in the order docs/CONTRACT.md gives (unknown ``name`` raises KeyError)."""
    metric = METRICS[name]
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(reader_query(metric, warehouse.adapter))
        return [tuple(row) for row in cursor.fetchall()]


def format_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned, means to two decimals."""

    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [f"{title} ({len(rows)} rows)", line(list(columns)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)
