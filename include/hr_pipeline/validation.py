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
from hr_pipeline.csv_reader import Chunk, RawRow, header_of_other_table

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
        return f"row {self.line_number}: " + "; ".join(self.reasons)


@dataclass
class ChunkResult:
    valid_rows: list[tuple[str, ...]]  # normalised text values in contract column order
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

    def frame(self, chunk: Chunk):
        """The chunk's well-formed rows as a DataFrame: raw text (missing when empty, Arrow-backed
        strings) plus the derived columns. Column-wise and vectorised: per-value Python work here
        would cost more than the whole validation."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc

        as_text = {pa.string(): pd.StringDtype(storage="pyarrow", na_value=np.nan)}.get
        frame = pd.DataFrame({ROW: np.asarray(chunk.row_numbers, dtype=np.int64)})
        for name, column in zip(self.contract.column_names, chunk.columns):
            trimmed = pc.utf8_trim_whitespace(column)
            empty_as_null = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
            frame[name] = empty_as_null.to_pandas(types_mapper=as_text)
        for column in self.contract.columns:
            raw = frame[column.name]
            if column.type is ColumnType.INTEGER:
                text = pa.array(raw.array)
                shaped = pc.if_else(pc.match_substring_regex(text, INTEGER_PATTERN),
                                    text, pa.scalar(None, pa.string()))
                # float64 holds every 32-bit integer exactly; bigger ones only need to fail the
                # range rule. Arrow's cast is C++: no per-value Python.
                frame[_derived(column.name, "int")] = pc.cast(shaped, pa.float64()).to_numpy(
                    zero_copy_only=False)
            elif column.type is ColumnType.TIMESTAMP:
                is_shaped = raw.str.fullmatch(INSTANT_PATTERN[1:-1]).fillna(False).astype(bool)
                parsed = pd.to_datetime(raw.where(is_shaped), format="ISO8601", utc=True, errors="coerce")
                real = pd.array(parsed.notna().to_numpy(), dtype="boolean")
                real[~is_shaped.to_numpy()] = pd.NA
                frame[_derived(column.name, "is_real_instant")] = real
                frame[_derived(column.name, "parsed")] = parsed
        key_ints = frame[_derived(self.contract.key, "int")]
        counts = pd.Series(1, index=frame.index, dtype="int64")
        if self.duplicate_ids:
            repeated = key_ints.map(self.duplicate_ids)
            counts = repeated.fillna(1).astype("int64")
        frame[_derived(self.contract.key, "count_in_file")] = counts
        return frame

    def validate(self, rows: Chunk | list[RawRow]) -> ChunkResult:
        width = len(self.contract.columns)
        chunk = rows if isinstance(rows, Chunk) else Chunk.of(rows, width)
        rejected: dict[int, RejectedRow] = {}
        for row in chunk.misshapen:
            reason = (
                f"has {len(row.fields)} fields, expected {width} "
                f"({', '.join(self.contract.column_names)})"
            )
            other = header_of_other_table(row.fields, self.contract)
            if other:
                reason += f"; this looks like the header row of table {other}: wrong folder?"
            rejected[row.row_number] = RejectedRow(row.row_number, row.line_number, row.fields, [reason])
        well_formed = chunk
        if not len(chunk.row_numbers):
            return ChunkResult([], sorted(rejected.values(), key=lambda r: r.row_number))

        frame = self.frame(well_formed)
        position_of = {}
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
                    if not position_of:
                        position_of = dict(zip(well_formed.row_numbers.tolist(), range(len(well_formed.row_numbers))))
                    row_fields = well_formed.fields(position_of[number])
                    raw = row_fields[self.contract.column_names.index(rule.column)].strip()
                    entry = rejected.setdefault(number, RejectedRow(number, number, row_fields, []))
                    entry.reasons.append(rule.explain(raw, failure.get(rule.checked_column)))

        first = rejected.get(1)  # record 1: a header row of the wrong table?
        if first and "header row" not in first.reasons[0] and (
                other := header_of_other_table(first.fields, self.contract)):
            first.reasons.append(f"this looks like the header row of table {other}: wrong folder?")
        valid_rows = self._normalised(frame, rejected)
        return ChunkResult(valid_rows, sorted(rejected.values(), key=lambda r: r.row_number))

    def _forget_batches(self) -> None:
        # GX's execution engine keeps every batch it loaded; over a file of many chunks that holds
        # every chunk in memory and slows each later one. Nothing is reused across chunks.
        manager = self._datasource.get_execution_engine().batch_manager
        manager.batch_data_cache.clear()
        manager.reset_batch_cache()

    def _normalised(self, frame, rejected: dict[int, RejectedRow]) -> list[tuple[str, ...]]:
        """Valid rows as text in the warehouse's canonical form: integers without sign or zero
        padding, instants as fixed-width UTC with microseconds (what SQLite stores, what
        PostgreSQL's COPY and SQL Server read)."""
        import numpy as np

        good = frame[~frame[ROW].isin(list(rejected))] if rejected else frame
        columns = []
        for column in self.contract.columns:
            if column.type is ColumnType.INTEGER:
                values = good[_derived(column.name, "int")].to_numpy(dtype=np.int64)
                columns.append(values.astype(str).tolist())
            elif column.type is ColumnType.TIMESTAMP:
                instants = good[_derived(column.name, "parsed")].dt.tz_localize(None)
                text = np.datetime_as_string(instants.to_numpy(dtype="datetime64[us]"), unit="us")
                columns.append(np.char.add(text, "Z").tolist())
            else:
                columns.append(good[column.name].tolist())
        return list(zip(*columns))


def parse_instant(text: str) -> datetime:
    """Normalised instant text back to a naive-UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
