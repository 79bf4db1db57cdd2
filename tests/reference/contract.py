"""The data contract, written out again in plain Python: the reference the pipeline is held to.

Independent of the pipeline on purpose: stdlib only (``csv``, ``re``, ``datetime``, ``hashlib``),
no pyarrow, pandas or Great Expectations, and nothing imported from ``hr_pipeline``. The table
definitions below are a second copy of the contract; tests/unit/test_reference_self.py is the one
place that compares them with ``hr_pipeline.contract.tables``.

The semantics (the project's decision, see the differential tests' docstrings):

1. A file containing a NUL byte, or not valid UTF-8, is *unreadable*: nothing of it is loaded.
   A UTF-8 BOM at the very start is dropped. Records are what ``csv.reader`` (default dialect,
   ``newline=""``) yields; empty records (blank lines) are skipped and not counted; the others
   are numbered 1, 2, 3... (the N of a reason's "row N:").
2. Record 1 is a header, and skipped, when it has one field per column and its fields, stripped
   and lower-cased, are the column names. It keeps its number: the first data row is then 2.
3. Every other record is a data row.
4. A data row with the wrong number of fields breaks the one rule "fields" and nothing else.
5. Fields are stripped of what ``str.strip()`` removes: the Unicode White_Space characters and
   \\x1c-\\x1f. Per column, every broken rule is listed: required / integer / range / length /
   instant format / real instant / foreign key / unique.
6. Valid rows are upserted by id, in record order, files in name order, tables in load order.
7. The metric tables are computed from the final tables (``reference_metrics``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime

# -- the contract, written out again -----------------------------------------------------------

INTEGER, STRING, TIMESTAMP = "integer", "string", "timestamp"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MAX_LENGTH = 255
KEY = "id"


@dataclass(frozen=True)
class RefColumn:
    name: str
    type: str  # INTEGER, STRING or TIMESTAMP
    references: str | None = None


TABLES: dict[str, tuple[RefColumn, ...]] = {
    "departments": (RefColumn("id", INTEGER), RefColumn("department", STRING)),
    "jobs": (RefColumn("id", INTEGER), RefColumn("job", STRING)),
    "hired_employees": (
        RefColumn("id", INTEGER),
        RefColumn("name", STRING),
        RefColumn("datetime", TIMESTAMP),
        RefColumn("department_id", INTEGER, references="departments"),
        RefColumn("job_id", INTEGER, references="jobs"),
    ),
}
LOAD_ORDER: tuple[str, ...] = ("departments", "jobs", "hired_employees")


def column_names(table: str) -> tuple[str, ...]:
    return tuple(column.name for column in TABLES[table])


# What str.strip() removes, written out: the Unicode White_Space characters and U+001C-U+001F.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def trim(text: str) -> str:
    return text.strip(WHITESPACE)


# Rule names, as the differential tests compare them: (record number, rule, column).
FIELDS, REQUIRED, INTEGER_RULE, RANGE, LENGTH = "fields", "required", "integer", "range", "length"
INSTANT_FORMAT, REAL_INSTANT, FOREIGN_KEY, UNIQUE = "instant format", "real instant", "foreign key", "unique"
RULES = (FIELDS, REQUIRED, INTEGER_RULE, RANGE, LENGTH, INSTANT_FORMAT, REAL_INSTANT, FOREIGN_KEY, UNIQUE)

_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_INSTANT_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)
_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_integer(text: str) -> tuple[bool, int | None]:
    """(is an integer, its value if within the 32-bit range) of a stripped field."""
    if not _INTEGER_RE.fullmatch(text):  # fullmatch: "$" would accept a final newline
        return False, None
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 10:  # beyond the range; and int() refuses more than 4,300 digits
        return True, None
    value = sign * int(digits)
    return True, value if INT_MIN <= value <= INT_MAX else None


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def parse_instant(text: str) -> tuple[bool, datetime | None]:
    """(has the instant shape, the naive-UTC datetime truncated to microseconds if real)."""
    match = _INSTANT_RE.fullmatch(text)
    if not match:
        return False, None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7) or ""
    if not (1 <= year <= 9999 and 1 <= month <= 12):
        return True, None
    days = _DAYS[month] + (1 if month == 2 and is_leap(year) else 0)
    if not (1 <= day <= days and hour < 24 and minute < 60 and second < 60):
        return True, None
    micro = int((fraction + "000000")[:6])  # truncated, not rounded
    return True, datetime(year, month, day, hour, minute, second, micro)


# -- one file ----------------------------------------------------------------------------------


@dataclass
class FileOutcome:
    """What the contract says of one file."""

    table: str
    sha256: str
    unreadable: bool = False
    header_skipped: bool = False
    data_rows: int = 0
    misshapen: int = 0  # data rows with the wrong number of fields
    loaded: list[tuple] = field(default_factory=list)  # typed rows, in record order
    loaded_records: list[int] = field(default_factory=list)  # their record numbers
    rejected: dict[int, set[tuple[str, str | None]]] = field(default_factory=dict)
    fields: dict[int, list[str]] = field(default_factory=dict)  # raw fields of rejected rows
    lines: dict[int, tuple[int, int]] = field(default_factory=dict)  # record -> (first, last) line

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)


def read_records(data: bytes) -> list[list[str]] | None:
    """The file's records (blank ones included, as empty lists), or None if unreadable."""
    return _read(data)[0]


def _read(data: bytes) -> tuple[list[list[str]] | None, list[tuple[int, int]]]:
    if b"\x00" in data:
        return None, []
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None, []
    if text.startswith("\ufeff"):
        text = text[1:]
    # Raised for this read only, then put back: the pipeline's own csv use keeps its limit.
    previous = csv.field_size_limit(sys.maxsize)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        records, spans, line = [], [], 0
        for record in reader:
            records.append(record)
            spans.append((line + 1, reader.line_num))
            line = reader.line_num
    finally:
        csv.field_size_limit(previous)
    return records, spans


def is_header(fields: list[str], table: str) -> bool:
    names = column_names(table)
    return len(fields) == len(names) and all(
        trim(value).lower() == name for value, name in zip(fields, names)
    )


def check_fields(
    columns: tuple[RefColumn, ...], raw: list[str], existing_keys: dict[str, set[int]]
) -> tuple[set[tuple[str, str | None]], list, int | None]:
    """One data row of the right width, field by field: the rules it breaks, its typed values
    (None where a field breaks a rule) and its key (None when the key field breaks one)."""
    broken: set[tuple[str, str | None]] = set()
    values: list = []
    key_value = None
    for column, value in zip(columns, raw):
        text = trim(value)
        typed = None
        if text == "":
            broken.add((REQUIRED, column.name))
        elif column.type == INTEGER:
            shaped, typed = parse_integer(text)
            if not shaped:
                broken.add((INTEGER_RULE, column.name))
            elif typed is None:
                broken.add((RANGE, column.name))
            else:
                if column.name == KEY:
                    key_value = typed
                if column.references and typed not in existing_keys.get(column.references, ()):
                    broken.add((FOREIGN_KEY, column.name))
        elif column.type == STRING:
            if len(text) > MAX_LENGTH:
                broken.add((LENGTH, column.name))
            else:
                typed = text
        elif column.type == TIMESTAMP:
            shaped, typed = parse_instant(text)
            if not shaped:
                broken.add((INSTANT_FORMAT, column.name))
            elif typed is None:
                broken.add((REAL_INSTANT, column.name))
        else:  # pragma: no cover - a column type this reference does not know
            raise ValueError(column.type)
        values.append(typed)
    return broken, values, key_value


def reference_file(table: str, data: bytes, existing_keys: dict[str, set[int]] | None = None) -> FileOutcome:
    """The contract's verdict on one file of ``table``.

    ``existing_keys``: the ids each referenced table holds when the file is ingested (for
    hired_employees: ``{"departments": {...}, "jobs": {...}}``); a missing table has none.
    """
    existing_keys = existing_keys or {}
    columns = TABLES[table]
    width = len(columns)
    outcome = FileOutcome(table, hashlib.sha256(data).hexdigest())
    records, spans = _read(data)
    if records is None:
        outcome.unreadable = True
        return outcome

    numbered = []  # (record number, fields, lines)
    for record, span in zip(records, spans):
        if record:
            numbered.append((len(numbered) + 1, record, span))
    if numbered and is_header(numbered[0][1], table):
        outcome.header_skipped = True
        numbered = numbered[1:]
    outcome.data_rows = len(numbered)

    checked = []  # (number, raw fields, broken rules, typed values or None, key value or None)
    key_counts: dict[int, int] = {}
    for number, raw, span in numbered:
        outcome.lines[number] = span
        if len(raw) != width:
            outcome.misshapen += 1
            checked.append((number, raw, {(FIELDS, None)}, None, None))
            continue
        broken, values, key_value = check_fields(columns, raw, existing_keys)
        if key_value is not None:
            key_counts[key_value] = key_counts.get(key_value, 0) + 1
        checked.append((number, raw, broken, values, key_value))

    for number, raw, broken, values, key_value in checked:
        if key_value is not None and key_counts[key_value] > 1:
            broken.add((UNIQUE, KEY))
        if broken:
            outcome.rejected[number] = broken
            outcome.fields[number] = list(raw)
        else:
            outcome.loaded.append(tuple(values))
            outcome.loaded_records.append(number)
    return outcome


# -- the whole pipeline ------------------------------------------------------------------------


@dataclass
class Outcome:
    """Final tables (id -> typed row) and each file's outcome, per table in file-name order."""

    tables: dict[str, dict[int, tuple]]
    files: dict[str, list[tuple[str, FileOutcome]]]


def referenced_tables(table: str) -> list[str]:
    return [column.references for column in TABLES[table] if column.references]


def reference_pipeline(
    files: dict[str, list[tuple[str, bytes]]], tables: dict[str, dict[int, tuple]] | None = None
) -> Outcome:
    """Ingest ``files`` (table -> [(file name, bytes)]) over ``tables`` (the starting state,
    empty by default): tables in load order, files of a table in name order, rows upserted by id
    in record order."""
    state = {name: dict((tables or {}).get(name, {})) for name in LOAD_ORDER}
    outcomes: dict[str, list[tuple[str, FileOutcome]]] = {}
    for table in LOAD_ORDER:
        # Keys as they stand when the table's files are ingested (one set for all its files).
        keys = {ref: set(state[ref]) for ref in referenced_tables(table)}
        for name, data in sorted(files.get(table, []), key=lambda item: item[0]):
            outcome = reference_file(table, data, keys)
            for row in outcome.loaded:
                state[table][row[0]] = row
            outcomes.setdefault(table, []).append((name, outcome))
    return Outcome(state, outcomes)


# -- the metric tables -------------------------------------------------------------------------

METRIC_NAMES = (
    "hires_by_quarter",
    "departments_above_mean",
    "quarterly_hires_2021",
    "departments_above_mean_2021",
)


def reference_metrics(tables: dict[str, dict[int, tuple]]) -> dict[str, list[tuple]]:
    """The four published tables, in the contract's order, from the final tables."""
    departments = {key: row[1] for key, row in tables.get("departments", {}).items()}
    jobs = {key: row[1] for key, row in tables.get("jobs", {}).items()}
    hires = tables.get("hired_employees", {}).values()

    quarters: dict[tuple[int, str, str], list[int]] = {}
    by_department: dict[tuple[int, int], int] = {}
    for _, _, when, department_id, job_id in hires:
        if department_id in departments:
            key = (when.year, department_id)
            by_department[key] = by_department.get(key, 0) + 1
            if job_id in jobs:
                counts = quarters.setdefault((when.year, departments[department_id], jobs[job_id]), [0] * 4)
                counts[(when.month - 1) // 3] += 1
    hires_by_quarter = [(*key, *counts) for key, counts in sorted(quarters.items())]

    totals: dict[int, list[int]] = {}
    for (year, _), hired in by_department.items():
        totals.setdefault(year, []).append(hired)
    means = {year: sum(counts) / len(counts) for year, counts in totals.items()}
    above = [
        (year, department_id, departments[department_id], hired, means[year])
        for (year, department_id), hired in by_department.items()
        if hired > means[year]
    ]
    above.sort(key=lambda row: (row[0], -row[3], row[2], row[1]))

    return {
        "hires_by_quarter": hires_by_quarter,
        "departments_above_mean": above,
        "quarterly_hires_2021": [row[1:] for row in hires_by_quarter if row[0] == 2021],
        "departments_above_mean_2021": [row[1:4] for row in above if row[0] == 2021],
    }


# Each metric's reading order: (column position, descending) pairs; ties beyond it are unordered.
METRIC_ORDER: dict[str, tuple[tuple[int, bool], ...]] = {
    "hires_by_quarter": ((0, False), (1, False), (2, False)),
    "departments_above_mean": ((0, False), (3, True), (2, False)),
    "quarterly_hires_2021": ((0, False), (1, False)),
    "departments_above_mean_2021": ((2, True), (1, False)),
}


# -- reading the pipeline's reasons ------------------------------------------------------------

_ROW_PREFIX = re.compile(r"row (\d+): (.*)", re.DOTALL)
_QUOTED = r"(?:'.*'|\".*\")"  # a raw value as Python's repr() writes it
_DIGITS = r"[+-]?[0-9]+"


def _reason_patterns(table: str) -> list[tuple[re.Pattern, str | None]]:
    names = "|".join(re.escape(name) for name in sorted(column_names(table), key=len, reverse=True))
    col = rf"(?P<col>{names})"
    return [
        (re.compile(r"has \d+ fields, expected \d+ \(.*\)", re.DOTALL), FIELDS),
        (re.compile(r"this looks like the header row of table \w+: wrong folder\?"), None),
        (re.compile(rf"{col}: required field is empty"), REQUIRED),
        (re.compile(rf"{col}: {_QUOTED} is not an integer", re.DOTALL), INTEGER_RULE),
        (re.compile(rf"{col}: {_DIGITS} is outside the 32-bit integer range"), RANGE),
        (re.compile(rf"{col}: longer than \d+ characters"), LENGTH),
        (
            re.compile(rf"{col}: {_QUOTED} is not an ISO 8601 UTC instant like [^;\s]*", re.DOTALL),
            INSTANT_FORMAT,
        ),
        (re.compile(rf"{col}: {_QUOTED} is not a real date and time", re.DOTALL), REAL_INSTANT),
        (re.compile(rf"{col}: {_DIGITS} does not exist in \w+"), FOREIGN_KEY),
        (
            re.compile(rf"{col}: {_DIGITS} appears \d+ times in this file, so every row with it is rejected"),
            UNIQUE,
        ),
    ]


class UnparsedReason(AssertionError):
    """A reason text that is none of the contract's reasons."""


def classify_reason(reason: str, table: str) -> tuple[str, str | None] | None:
    """(rule, column) of one reason; None for the "looks like a header" hint. Raises
    ``UnparsedReason`` for a text that is no known reason."""
    for pattern, rule in _reason_patterns(table):
        match = pattern.fullmatch(reason)
        if match:
            if rule is None:
                return None
            return rule, (match.group("col") if rule != FIELDS else None)
    raise UnparsedReason(f"not a reason of the contract: {reason!r}")


def parse_reason_text(text: str, table: str) -> tuple[int, set[tuple[str, str | None]]]:
    """A rejects file's ``reason`` cell, "row N: <reason>; <reason>...", as (N, {(rule, column)}).

    Raw values inside a reason may hold "; ", so the text is not simply split: it is cut at
    "; " only where every piece is a whole reason (the first such cutting, preferring more,
    shorter pieces)."""
    match = _ROW_PREFIX.fullmatch(text)
    if not match:
        raise UnparsedReason(f"a reason must start with 'row N: ': {text!r}")
    body = match.group(2)
    cuts = [m.start() for m in re.finditer("; ", body)] + [len(body)]

    def pieces(start: int):
        for end in cuts:
            if end < start:
                continue
            try:
                found = classify_reason(body[start:end], table)
            except UnparsedReason:
                continue
            if end == len(body):
                return [found]
            rest = pieces(end + 2)
            if rest is not None:
                return [found] + rest
        return None

    parsed = pieces(0)
    if parsed is None:
        raise UnparsedReason(f"not a list of the contract's reasons: {text!r}")
    return int(match.group(1)), {item for item in parsed if item is not None}


# Spreadsheet-formula neutralisation of the rejects file's field values.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralised(value: str) -> str:
    """A raw field as the rejects file must write it: an apostrophe before a value a spreadsheet
    would read as a formula (or one that starts with an apostrophe itself)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def read_rejects_csv(data: bytes) -> list[list[str]]:
    """A rejects file's records (the header row first)."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        return [r for r in csv.reader(io.StringIO(data.decode("utf-8"), newline="")) if r]
    finally:
        csv.field_size_limit(previous)


# -- comparing what the pipeline did with one file ---------------------------------------------


@dataclass
class Observed:
    """What the pipeline did with one file, in the reference's terms (filled in by a test)."""

    unreadable: bool = False
    data_rows: int | None = None  # rows it counted (None: not known)
    valid: int | None = None  # rows it found valid
    rejected: dict[int, set[tuple[str, str | None]]] = field(default_factory=dict)
    fields: dict[int, list[str]] = field(default_factory=dict)  # the rejected rows' fields
    loaded: list[tuple] | None = None  # its valid rows, typed, in order (None: not known)
    misshapen: int | None = None
    header_skipped: bool | None = None
    problems: list[str] = field(default_factory=list)  # found while reading its outputs


def record_lines(data: bytes, outcome: FileOutcome, number: int) -> str:
    """The physical lines of record ``number``, for a failure message."""
    if outcome.unreadable or number not in outcome.lines:
        return "?"
    text = data.decode("utf-8")
    text = text[1:] if text.startswith("\ufeff") else text
    first, last = outcome.lines[number]
    lines = io.StringIO(text, newline="").readlines()
    return repr("".join(lines[first - 1 : last]))[:400]


def differences(
    expected: FileOutcome,
    observed: Observed,
    data: bytes | None = None,
    written: bool = False,
    limit: int = 6,
) -> list[str]:
    """Every way ``observed`` differs from the reference's ``expected`` (empty: they agree).

    ``written``: the rejected rows' fields are as a rejects file writes them (formula
    neutralisation expected). Fields are compared only for rows with the right number of
    fields (a misshapen row's fields are fitted into the columns by the rejects file)."""
    out: list[str] = list(observed.problems)
    if observed.unreadable != expected.unreadable:
        return out + [f"unreadable: pipeline {observed.unreadable}, reference {expected.unreadable}"]
    if expected.unreadable:
        return out
    if observed.data_rows is not None and observed.data_rows != expected.data_rows:
        out.append(f"data rows: pipeline {observed.data_rows}, reference {expected.data_rows}")
    if observed.misshapen is not None and observed.misshapen != expected.misshapen:
        out.append(f"misshapen rows: pipeline {observed.misshapen}, reference {expected.misshapen}")
    if observed.header_skipped is not None and observed.header_skipped != expected.header_skipped:
        out.append(f"header skipped: pipeline {observed.header_skipped}, reference {expected.header_skipped}")
    if observed.valid is not None and observed.valid != len(expected.loaded):
        out.append(f"valid rows: pipeline {observed.valid}, reference {len(expected.loaded)}")
    if (
        observed.data_rows is not None
        and observed.valid is not None
        and (observed.valid + len(observed.rejected) != observed.data_rows)
    ):
        out.append(
            f"invariant: pipeline {observed.valid} valid + {len(observed.rejected)} rejected"
            f" != {observed.data_rows} rows"
        )
    shown = 0
    for number in sorted(set(expected.rejected) | set(observed.rejected)):
        want, got = expected.rejected.get(number, set()), observed.rejected.get(number, set())
        if want != got and shown < limit:
            shown += 1
            context = f" record {record_lines(data, expected, number)}" if data is not None else ""
            out.append(
                f"record {number}: pipeline {sorted(got, key=str)}, reference "
                f"{sorted(want, key=str)}{context}"
            )
    mismatched = sum(
        1
        for n in set(expected.rejected) | set(observed.rejected)
        if expected.rejected.get(n, set()) != observed.rejected.get(n, set())
    )
    if mismatched > shown:
        out.append(f"... {mismatched - shown} more records whose rules differ")
    width = len(TABLES[expected.table])
    bad_fields = 0
    for number, raw in sorted(expected.fields.items()):
        if len(raw) != width or number not in observed.fields:
            continue
        want = [neutralised(v) for v in raw] if written else raw
        if observed.fields[number] != want:
            bad_fields += 1
            if bad_fields <= 3:
                out.append(
                    f"record {number} fields: pipeline {observed.fields[number]!r}, reference {want!r}"
                )
    if observed.loaded is not None and observed.loaded != expected.loaded:
        pairs = list(zip(expected.loaded_records, expected.loaded))
        extra = [row for row in observed.loaded if row not in expected.loaded]
        missing = [(n, row) for n, row in pairs if row not in observed.loaded]
        out.append(
            f"valid rows differ: {len(observed.loaded)} from the pipeline, {len(expected.loaded)}"
            f" from the reference; not in the reference: {extra[:3]!r}; missing (record, row):"
            f" {missing[:3]!r}"
        )
    return out
