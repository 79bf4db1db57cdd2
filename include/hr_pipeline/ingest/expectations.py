"""Row validation with Great Expectations, derived from the table contract.

Each rule of docs/CONTRACT.md is one ``Rule``: the GX expectation that checks it and the sentence a user
reads when a row breaks it. The suite is built from the contract (and, for foreign keys, from the
keys that exist in the warehouse), then run on each chunk of the file as a pandas DataFrame whose
columns are the raw text of the fields plus a few derived columns (the integer a field holds,
whether an instant is a real calendar instant, how often an id occurs in the whole file).

GX reports the failing rows of every expectation (``result_format=COMPLETE`` with the record number
as index column), so a row gets one reason per rule it breaks, not only the first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hr_pipeline.contract.field_values import (
    canonical_instants,
    integer_values,
    normalized_text,
    parse_instants,
)
from hr_pipeline.contract.tables import (
    INTEGER_MAX,
    INTEGER_MIN,
    STRING_MAX_LENGTH,
    Column,
    ColumnType,
    TableContract,
)
from hr_pipeline.ingest.reader import Chunk, RawRow, header_of_other_table

log = logging.getLogger(__name__)

ROW = "row"  # the DataFrame's index, named: the record number GX reports failing rows by


@dataclass(frozen=True)
class Rule:
    """One rule of the contract on one column, and how a broken one is explained."""

    name: str
    column: str
    expectation: Callable[[int], Any]  # rule index -> GX expectation (index goes into meta)
    explain: Callable[[str, dict[int, int]], str]  # (trimmed text, duplicate ids) -> reason


@dataclass
class RejectedRow:
    record_number: int  # of the record in the file, as ``RawRow``: the "row N" of its reason
    fields: list[str]
    reasons: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)  # "<column>: <rule>" per reason, for counting

    @property
    def reason(self) -> str:
        return f"row {self.record_number}: " + "; ".join(self.reasons)


@dataclass
class ChunkResult:
    # The valid rows in canonical form, in contract column order, as an Arrow table: integers as
    # int64, instants and names as text. Written to the load file by Arrow's CSV writer, with no
    # per-row Python (see ``_canonical``).
    valid: Any
    rejected: list[RejectedRow]

    @property
    def valid_count(self) -> int:
        return self.valid.num_rows

    @property
    def valid_rows(self) -> list[tuple[str, ...]]:
        """The valid rows as tuples of text (for small callers and tests)."""
        columns = [[str(value) for value in column.to_pylist()] for column in self.valid.columns]
        return list(zip(*columns))


def _derived(column: str, kind: str) -> str:
    return f"{column}__{kind}"


def _flags(passed, text):
    """A rule's per-row outcome as a derived column for GX: true or false, missing where the
    field is empty (the "required" rule reports those, as a map expectation skips nulls)."""
    import numpy as np
    import pandas as pd

    return pd.arrays.BooleanArray(
        np.asarray(passed, dtype=bool), text.is_null().to_numpy(zero_copy_only=False)
    )


def build_rules(contract: TableContract) -> list[Rule]:
    """The contract's rules, in the order their reasons are listed: per column, required, its
    type's format rules, its foreign key; then the key's uniqueness in the file."""
    from types import SimpleNamespace

    from hr_pipeline.ingest.gx_tuning import expectation_classes

    gxe = SimpleNamespace(**expectation_classes())  # GX's expectations (see gx_tuning)
    rules: list[Rule] = []
    for column in contract.columns:
        rules.append(_required_rule(gxe, column))
        rules.extend(_format_rules(gxe, column))
        if column.references:
            rules.append(_foreign_key_rule(gxe, column))
    rules.append(_unique_key_rule(gxe, contract.key))
    return rules


def _required_rule(gxe, column: Column) -> Rule:
    c = column.name
    return Rule(
        "required",
        c,
        lambda i, c=c: gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"rule": i}),
        lambda raw, _, c=c: f"{c}: required field is empty",
    )


def _format_rules(gxe, column: Column) -> list[Rule]:
    """The rules of the column's type.

    The two format rules (integer, instant) are decided in Arrow while the chunk is typed
    (integers: a cast that succeeds on the whole column proves the shape, a regex runs only where
    it fails; instants: the shape regex that parse_instants needs anyway) and checked here as a
    derived flag, so GX's own regex expectations do not run the same patterns a second time.
    """
    if column.type is ColumnType.INTEGER:
        return _integer_rules(gxe, column.name)
    if column.type is ColumnType.STRING:
        return [_length_rule(gxe, column.name)]
    if column.type is ColumnType.TIMESTAMP:
        return _instant_rules(gxe, column.name)
    return []


def _integer_rules(gxe, c: str) -> list[Rule]:
    is_integer = _derived(c, "is_integer")
    as_int = _derived(c, "int")
    return [
        Rule(
            "integer",
            c,
            lambda i, col=is_integer: gxe.ExpectColumnValuesToBeInSet(
                column=col, value_set=[True], meta={"rule": i}
            ),
            lambda raw, _, c=c: f"{c}: {raw!r} is not an integer",
        ),
        Rule(
            "integer range",
            c,
            lambda i, col=as_int: gxe.ExpectColumnValuesToBeBetween(
                column=col, min_value=INTEGER_MIN, max_value=INTEGER_MAX, meta={"rule": i}
            ),
            lambda raw, _, c=c: f"{c}: {raw} is outside the 32-bit integer range",
        ),
    ]


def _length_rule(gxe, c: str) -> Rule:
    return Rule(
        "length",
        c,
        lambda i, c=c: gxe.ExpectColumnValueLengthsToBeBetween(
            column=c, max_value=STRING_MAX_LENGTH, meta={"rule": i}
        ),
        lambda raw, _, c=c: f"{c}: longer than {STRING_MAX_LENGTH} characters",
    )


def _instant_rules(gxe, c: str) -> list[Rule]:
    is_instant = _derived(c, "is_instant")
    is_real = _derived(c, "is_real_instant")
    return [
        Rule(
            "instant format",
            c,
            lambda i, col=is_instant: gxe.ExpectColumnValuesToBeInSet(
                column=col, value_set=[True], meta={"rule": i}
            ),
            lambda raw, _, c=c: f"{c}: {raw!r} is not an ISO 8601 UTC instant like 2021-11-07T02:48:42Z",
        ),
        Rule(
            "real instant",
            c,
            lambda i, col=is_real: gxe.ExpectColumnValuesToBeInSet(
                column=col, value_set=[True], meta={"rule": i}
            ),
            lambda raw, _, c=c: f"{c}: {raw!r} is not a real date and time",
        ),
    ]


def _foreign_key_rule(gxe, column: Column) -> Rule:
    """Whether the id exists in the referenced table, as a derived column (looked up in Arrow
    against the warehouse's keys) checked to be true. A value_set of every key would do the
    same, but GX copies it for every metric of every run: a cost that grows with the referenced
    table."""
    c = column.name
    exists = _derived(c, "exists")
    return Rule(
        "foreign key",
        c,
        lambda i, col=exists: gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[True], meta={"rule": i}),
        lambda raw, _, c=c, t=column.references: f"{c}: {raw} does not exist in {t}",
    )


def _unique_key_rule(gxe, key: str) -> Rule:
    key_count = _derived(key, "count_in_file")
    return Rule(
        "unique key",
        key,
        lambda i: gxe.ExpectColumnValuesToBeBetween(column=key_count, max_value=1, meta={"rule": i}),
        lambda raw, duplicates, k=key: (
            f"{k}: {raw} appears {duplicates[int(raw)]} times in this file, so every row with it is rejected"
        ),
    )


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
        import numpy as np
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from hr_pipeline.ingest import gx_tuning

        gx_tuning.configure()
        self.contract = contract
        self.duplicate_ids = duplicate_ids or {}
        self.rules = build_rules(contract)
        self.reference_keys = {
            table: np.unique(np.fromiter(keys, dtype=np.int64))
            for table, keys in (reference_keys or {}).items()
        }
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._datasource = context.data_sources.add_pandas(f"{contract.name}_extract")
        self._batch_definition = self._datasource.add_dataframe_asset(
            f"{contract.name}_rows"
        ).add_batch_definition_whole_dataframe("chunk")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{contract.name}_contract"))
        for index, rule in enumerate(self.rules):
            suite.add_expectation(rule.expectation(index))
        self.suite = suite
        self._failure_suites: dict[tuple[int, ...], Any] = {}

    def frame(self, chunk: Chunk):
        """The chunk's well-formed rows as a DataFrame: raw text (missing when empty, Arrow-backed
        strings) plus the derived columns; and the parsed instants, as Arrow arrays by column
        (only the valid rows' output needs them). Column-wise in Arrow (C++): per-value Python
        work here would cost more than the whole validation."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        as_text = {pa.string(): pd.StringDtype(storage="pyarrow", na_value=np.nan)}.get
        as_boolean = {pa.bool_(): pd.BooleanDtype()}.get
        frame = pd.DataFrame(index=pd.Index(np.asarray(chunk.record_numbers, dtype=np.int64), name=ROW))
        texts = {}
        for name, column in zip(self.contract.column_names, chunk.columns):
            texts[name] = column = normalized_text(column)
            frame[name] = column.to_pandas(types_mapper=as_text).array  # by position, not index
        instants = {}
        for column in self.contract.columns:
            text = texts[column.name]
            if column.type is ColumnType.INTEGER:
                ints = integer_values(text)
                frame[_derived(column.name, "int")] = ints
                frame[_derived(column.name, "is_integer")] = _flags(~np.isnan(ints), text)
                if column.references:
                    # Looked up only for ids that can exist (integers of the 32-bit range): the
                    # other rules report the rest, so a row gets one reason per problem.
                    known = self.reference_keys.get(column.references, np.array([], dtype=np.int64))
                    exists = pd.array(np.isin(ints, known), dtype="boolean")
                    exists[np.isnan(ints) | (ints < INTEGER_MIN) | (ints > INTEGER_MAX)] = pd.NA
                    frame[_derived(column.name, "exists")] = exists
            elif column.type is ColumnType.TIMESTAMP:
                is_real, parsed = parse_instants(text)
                instants[column.name] = (parsed, text)
                frame[_derived(column.name, "is_real_instant")] = is_real.to_pandas(
                    types_mapper=as_boolean
                ).array
                frame[_derived(column.name, "is_instant")] = _flags(
                    ~is_real.is_null().to_numpy(zero_copy_only=False), text
                )
        key_ints = frame[_derived(self.contract.key, "int")]
        counts = pd.Series(1, index=frame.index, dtype="int64")
        if self.duplicate_ids:
            repeated = key_ints.map(self.duplicate_ids)
            counts = repeated.fillna(1).astype("int64")
        frame[_derived(self.contract.key, "count_in_file")] = counts
        return frame, instants

    def validate(self, rows: Chunk | list[RawRow]) -> ChunkResult:
        width = len(self.contract.columns)
        chunk = rows if isinstance(rows, Chunk) else Chunk.of(rows, width)
        rejected = self._misshapen_rejects(chunk)
        if not len(chunk.record_numbers):
            return ChunkResult(
                self._canonical(None, {}, []), sorted(rejected.values(), key=lambda r: r.record_number)
            )

        frame, instants = self.frame(chunk)
        result = self._run_suite(frame)
        if result is not None:
            self._explain_failures(result, chunk, rejected)
        self._note_wrong_header(rejected)
        return ChunkResult(
            self._canonical(frame, instants, list(rejected)),
            sorted(rejected.values(), key=lambda r: r.record_number),
        )

    def _misshapen_rejects(self, chunk: Chunk) -> dict[int, RejectedRow]:
        """The chunk's records with the wrong number of fields, rejected, by record number."""
        width = len(self.contract.columns)
        rejected: dict[int, RejectedRow] = {}
        for row in chunk.misshapen:
            reason = (
                f"has {len(row.fields)} fields, expected {width} ({', '.join(self.contract.column_names)})"
            )
            other = header_of_other_table(row.fields, self.contract)
            if other:
                reason += f"; this looks like the header row of table {other}: wrong folder?"
            rejected[row.record_number] = RejectedRow(
                row.record_number, row.fields, [reason], ["wrong number of fields"]
            )
        return rejected

    def _run_suite(self, frame):
        """The suite run on ``frame``: None when every rule passes, else the result listing the
        failing rows of the rules that failed."""
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        # First pass or fail per rule: GX then builds no list of failing rows, which costs about
        # as much again. A clean chunk, the common case, is done after it.
        verdict = batch.validate(self.suite, result_format={"result_format": "BOOLEAN_ONLY"})
        result = None
        if not verdict.success:
            failed = tuple(
                sorted(
                    outcome.expectation_config.meta["rule"]
                    for outcome in verdict.results
                    if not outcome.success
                )
            )
            # Batch.validate, unlike a ValidationDefinition's run, keeps no copy of the results
            # in the context's store: with every failing row listed, that copy would grow with
            # the file.
            result = batch.validate(
                self._suite_of(failed),
                # Every failing row by its number (the named index), without the failing
                # values: GX then hands back one list of row numbers per rule instead of a
                # dict per row, many times slower on a file of only failing rows. The
                # reasons are built from the text.
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [ROW],
                    "exclude_unexpected_values": True,
                },
            )
        self._forget_batches()
        return result

    def _note_wrong_header(self, rejected: dict[int, RejectedRow]) -> None:
        """Record 1, rejected, may be the header row of another table: its reasons say so."""
        first = rejected.get(1)
        if (
            first
            and "header row" not in first.reasons[0]
            and (other := header_of_other_table(first.fields, self.contract))
        ):
            first.reasons.append(f"this looks like the header row of table {other}: wrong folder?")

    def _suite_of(self, rules: tuple[int, ...]):
        """The suite of only these rules (by index), to list their failing rows: built once per
        set of failing rules, not registered in the context (Batch.validate needs no store)."""
        suite = self._failure_suites.get(rules)
        if suite is None:
            import great_expectations as gx

            suite = self._failure_suites[rules] = gx.ExpectationSuite(
                name=f"{self.contract.name}_rules_{'_'.join(map(str, rules))}",
                expectations=[self.rules[index].expectation(index) for index in rules],
            )
        return suite

    def _explain_failures(self, result, chunk: Chunk, rejected: dict[int, RejectedRow]) -> None:
        """One reason per failed rule on each failing row, in the suite's order of rules."""
        import numpy as np

        failures = []
        for outcome in result.results:
            if outcome.success:
                continue
            if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"Great Expectations could not evaluate {outcome.expectation_config.type}: "
                    f"{outcome.exception_info.get('exception_message')}"
                )
            rule = self.rules[outcome.expectation_config.meta["rule"]]
            found = [
                int(n) for listed in outcome.result.get("unexpected_index_list") or [] for n in listed[ROW]
            ]
            failures.append((rule, found))
        # The failing rows' fields, fetched column-wise in one go (a file where every row fails,
        # say hires loaded before their departments, must not cost a lookup per field).
        numbers = np.unique(np.array([n for _, found in failures for n in found], dtype=np.int64))
        order = np.argsort(chunk.record_numbers, kind="stable")
        positions = order[np.searchsorted(chunk.record_numbers, numbers, sorter=order)]
        columns = [column.take(positions).to_pylist() for column in chunk.columns]
        fields_of = {
            number: [value or "" for value in values]
            for number, values in zip(numbers.tolist(), zip(*columns))
        }
        column_index = {name: i for i, name in enumerate(self.contract.column_names)}
        for rule, found in failures:
            index = column_index[rule.column]
            for number in found:
                entry = rejected.get(number)
                if entry is None:
                    entry = rejected[number] = RejectedRow(number, fields_of[number], [])
                entry.reasons.append(rule.explain(entry.fields[index].strip(), self.duplicate_ids))
                entry.rules.append(f"{rule.column}: {rule.name}")

    def _forget_batches(self) -> None:
        # GX's execution engine keeps every batch it loaded; over a file of many chunks that holds
        # every chunk in memory and slows each later one. Nothing is reused across chunks.
        manager = self._datasource.get_execution_engine().batch_manager
        manager.batch_data_cache.clear()
        manager.reset_batch_cache()

    def _canonical(self, frame, instants: dict, rejected_rows: list[int]):
        """The valid rows of ``frame`` in the warehouse's canonical form, as an Arrow table:
        integers as int64 (no sign or zero padding survives), instants as fixed-width UTC text
        with microseconds (what SQLite stores, what PostgreSQL's COPY and SQL Server read),
        names trimmed. Column-wise in Arrow: a Python object per value here would cost more than
        Great Expectations itself."""
        import numpy as np
        import pyarrow as pa

        types = {
            ColumnType.INTEGER: pa.int64(),
            ColumnType.STRING: pa.string(),
            ColumnType.TIMESTAMP: pa.string(),
        }
        schema = pa.schema([(c.name, types[c.type]) for c in self.contract.columns])
        if frame is None or not len(frame):
            return schema.empty_table()
        keep = pa.array(~np.isin(frame.index.to_numpy(), rejected_rows)) if rejected_rows else None

        def valid_only(values):  # rejected rows may hold NaN or NaT: drop them before casting
            return values if keep is None else values.filter(keep)

        columns = []
        for column in self.contract.columns:
            if column.type is ColumnType.INTEGER:
                floats = valid_only(pa.array(frame[_derived(column.name, "int")].to_numpy(), pa.float64()))
                columns.append(floats.cast(pa.int64()))
            elif column.type is ColumnType.TIMESTAMP:
                parsed, text = instants[column.name]
                columns.append(canonical_instants(valid_only(parsed), valid_only(text)))
            else:
                columns.append(valid_only(pa.array(frame[column.name].array, pa.string())))
        return pa.Table.from_arrays(columns, schema=schema)
