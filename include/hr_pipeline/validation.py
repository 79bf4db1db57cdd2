"""Row validation with Great Expectations, derived from the table contract.

Each rule of the SPEC is one ``Rule``: the GX expectation that checks it and the sentence a user
reads when a row breaks it. The suite is built from the contract (and, for foreign keys, from the
keys that exist in the warehouse), then run on each chunk of the file as a pandas DataFrame whose
columns are the raw text of the fields plus a few derived columns (the integer a field holds,
whether an instant is a real calendar instant, how often an id occurs in the whole file).

GX reports the failing rows of every expectation (``result_format=COMPLETE`` with the row number as
index column), so a row gets one reason per rule it breaks, not only the first.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hr_pipeline.contracts import (
    INTEGER_MAX,
    INTEGER_MIN,
    STRING_MAX_LENGTH,
    ColumnType,
    TableContract,
)
from hr_pipeline.csv_reader import RawRow, header_of_other_table

log = logging.getLogger(__name__)

INTEGER_PATTERN = r"^[+-]?[0-9]+$"
# ISO 8601 UTC instant as the SPEC writes it: date, 'T', time, optional fraction, 'Z'.
INSTANT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z$"
ROW = "row"  # DataFrame column holding the data row number: GX reports failing rows by it


@dataclass(frozen=True)
class Rule:
    """One rule of the contract on one column, and how a broken one is explained."""

    name: str
    column: str
    checked_column: str  # the DataFrame column the expectation runs on
    expectation: Callable[[int], Any]  # rule index -> GX expectation (index goes into meta)
    explain: Callable[[str | None, Any], str]  # (raw text, checked value) -> reason


@dataclass
class RejectedRow:
    row_number: int
    line_number: int
    fields: list[str]
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return f"line {self.line_number}: " + "; ".join(self.reasons)


@dataclass
class ChunkResult:
    valid_rows: list[list[str]]  # normalised text values in contract column order
    rejected: list[RejectedRow]


def _derived(column: str, kind: str) -> str:
    return f"{column}__{kind}"


def build_rules(
    contract: TableContract, reference_keys: dict[str, Iterable[int]] | None = None
) -> list[Rule]:
    """The contract's rules, in the order their reasons are listed."""
    import great_expectations.expectations as gxe

    reference_keys = reference_keys or {}
    rules: list[Rule] = []

    def add(name, column, checked, expectation, explain):
        rules.append(Rule(name, column, checked, expectation, explain))

    for column in contract.columns:
        c = column.name
        add("required", c, c,
            lambda i, c=c: gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"rule": i}),
            lambda raw, _, c=c: f"{c}: required field is empty")
        if column.type is ColumnType.INTEGER:
            add("integer", c, c,
                lambda i, c=c: gxe.ExpectColumnValuesToMatchRegex(column=c, regex=INTEGER_PATTERN, meta={"rule": i}),
                lambda raw, _, c=c: f"{c}: {raw!r} is not an integer")
            as_int = _derived(c, "int")
            add("integer range", c, as_int,
                lambda i, col=as_int: gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=INTEGER_MIN, max_value=INTEGER_MAX, meta={"rule": i}),
                lambda raw, _, c=c: f"{c}: {raw} is outside the 32-bit integer range")
        elif column.type is ColumnType.STRING:
            add("length", c, c,
                lambda i, c=c: gxe.ExpectColumnValueLengthsToBeBetween(
                    column=c, max_value=STRING_MAX_LENGTH, meta={"rule": i}),
                lambda raw, _, c=c: f"{c}: longer than {STRING_MAX_LENGTH} characters")
        elif column.type is ColumnType.TIMESTAMP:
            add("instant format", c, c,
                lambda i, c=c: gxe.ExpectColumnValuesToMatchRegex(column=c, regex=INSTANT_PATTERN, meta={"rule": i}),
                lambda raw, _, c=c: f"{c}: {raw!r} is not an ISO 8601 UTC instant like 2021-11-07T02:48:42Z")
            is_real = _derived(c, "is_real_instant")
            add("real instant", c, is_real,
                lambda i, col=is_real: gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[True], meta={"rule": i}),
                lambda raw, _, c=c: f"{c}: {raw!r} is not a real date and time")
        if column.references:
            known = sorted(reference_keys.get(column.references, ()))
            as_int = _derived(c, "int")
            add("foreign key", c, as_int,
                lambda i, col=as_int, known=known: gxe.ExpectColumnValuesToBeInSet(
                    column=col, value_set=known, meta={"rule": i}),
                lambda raw, _, c=c, t=column.references: f"{c}: {raw} does not exist in {t}")
    key_count = _derived(contract.key, "count_in_file")
    add("unique key", contract.key, key_count,
        lambda i: gxe.ExpectColumnValuesToBeBetween(column=key_count, max_value=1, meta={"rule": i}),
        lambda raw, count, k=contract.key: f"{k}: {raw} appears {int(count)} times in this file, so every row with it is rejected")
    return rules


class ChunkValidator:
    """Validates chunks of one file against one contract with one GX suite."""

    def __init__(
        self,
        contract: TableContract,
        reference_keys: dict[str, Iterable[int]] | None = None,
        duplicate_ids: dict[int, int] | None = None,
    ):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.contract = contract
        self.duplicate_ids = duplicate_ids or {}
        self.rules = build_rules(contract, reference_keys)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._datasource = context.data_sources.add_pandas(f"{contract.name}_extract")
        batch = (
            self._datasource.add_dataframe_asset(f"{contract.name}_rows")
            .add_batch_definition_whole_dataframe("chunk")
        )
        suite = context.suites.add(gx.ExpectationSuite(name=f"{contract.name}_contract"))
        for index, rule in enumerate(self.rules):
            suite.add_expectation(rule.expectation(index))
        self.suite = suite
        self.validation = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=f"{contract.name}_rows")
        )

    def frame(self, rows: list[RawRow]):
        """The chunk as a DataFrame: raw text (None when empty) plus the derived columns."""
        import pandas as pd

        names = self.contract.column_names
        columns: dict[str, Any] = {ROW: [r.row_number for r in rows]}
        for position, name in enumerate(names):
            values = [r.fields[position].strip() for r in rows]
            columns[name] = [v if v else None for v in values]
        frame = pd.DataFrame(columns, dtype=object)
        frame[ROW] = frame[ROW].astype("int64")
        for column in self.contract.columns:
            raw = frame[column.name]
            if column.type is ColumnType.INTEGER:
                shaped = raw.where(raw.str.match(INTEGER_PATTERN, na=False))
                # float64 holds every 32-bit integer exactly; bigger ones only need to fail the range rule
                frame[_derived(column.name, "int")] = pd.to_numeric(shaped, errors="coerce")
            elif column.type is ColumnType.TIMESTAMP:
                shaped = raw.where(raw.str.match(INSTANT_PATTERN, na=False))
                parsed = pd.to_datetime(shaped, format="ISO8601", utc=True, errors="coerce")
                real = parsed.notna().astype(object).where(shaped.notna(), None)
                frame[_derived(column.name, "is_real_instant")] = real
                frame[_derived(column.name, "parsed")] = parsed
        key_ints = frame[_derived(self.contract.key, "int")]
        frame[_derived(self.contract.key, "count_in_file")] = (
            key_ints.map(lambda v: self.duplicate_ids.get(int(v), 1) if v == v else 1)
            if self.duplicate_ids
            else 1
        )
        return frame

    def validate(self, rows: list[RawRow]) -> ChunkResult:
        width = len(self.contract.columns)
        rejected: dict[int, RejectedRow] = {}
        well_formed: list[RawRow] = []
        for row in rows:
            if len(row.fields) == width:
                well_formed.append(row)
                continue
            reason = (
                f"has {len(row.fields)} fields, expected {width} "
                f"({', '.join(self.contract.column_names)})"
            )
            other = header_of_other_table(row.fields, self.contract)
            if other:
                reason += f"; this is the header row of table {other}: wrong folder?"
            rejected[row.row_number] = RejectedRow(row.row_number, row.line_number, row.fields, [reason])
        if not well_formed:
            return ChunkResult([], sorted(rejected.values(), key=lambda r: r.row_number))

        frame = self.frame(well_formed)
        by_number = {row.row_number: row for row in well_formed}
        result = self.validation.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]},
        )
        self._forget_batches()
        if not result.success:
            for outcome in result.results:
                if outcome.success:
                    continue
                if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                    raise RuntimeError(
                        f"Great Expectations could not evaluate {outcome.expectation_config.type}: "
                        f"{outcome.exception_info.get('exception_message')}"
                    )
                rule = self.rules[outcome.expectation_config.meta["rule"]]
                for failure in outcome.result.get("unexpected_index_list") or []:
                    number = int(failure[ROW])
                    row = by_number[number]
                    raw = row.fields[self.contract.column_names.index(rule.column)].strip()
                    entry = rejected.setdefault(
                        number, RejectedRow(number, row.line_number, row.fields, [])
                    )
                    entry.reasons.append(rule.explain(raw, failure.get(rule.checked_column)))

        valid_rows = self._normalised(frame, rejected)
        return ChunkResult(valid_rows, sorted(rejected.values(), key=lambda r: r.row_number))

    def _forget_batches(self) -> None:
        # GX's execution engine keeps every batch it loaded; over a file of many chunks that holds
        # every chunk in memory and slows each later one. Nothing is reused across chunks.
        manager = self._datasource.get_execution_engine().batch_manager
        manager.batch_data_cache.clear()
        manager.reset_batch_cache()

    def _normalised(self, frame, rejected: dict[int, RejectedRow]) -> list[list[str]]:
        """Valid rows as text in the warehouse's canonical form (integers without sign noise,
        instants as fixed-width UTC with microseconds)."""
        keep = ~frame[ROW].isin(list(rejected)) if rejected else None
        good = frame[keep] if keep is not None else frame
        columns = []
        for column in self.contract.columns:
            if column.type is ColumnType.INTEGER:
                columns.append(good[_derived(column.name, "int")].astype("int64").astype(str).tolist())
            elif column.type is ColumnType.TIMESTAMP:
                columns.append(
                    good[_derived(column.name, "parsed")].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").tolist()
                )
            else:
                columns.append(good[column.name].tolist())
        return [list(values) for values in zip(*columns)]


def parse_instant(text: str) -> datetime:
    """Normalised instant text back to a naive-UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
