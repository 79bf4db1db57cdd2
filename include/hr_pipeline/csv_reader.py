"""Streaming reader of the CSV extracts, as the SPEC describes them.

UTF-8 (a byte-order mark tolerated), LF or CRLF, quoted fields, no header row (a first row equal
to the column names is accepted and skipped). Rows come out in chunks so that memory does not grow
with the file. A file that cannot be read as text at all raises ``UnreadableFileError`` before a
single row is handed out by ``scan`` - the first pass over every file - so nothing of it is loaded.
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hr_pipeline.contracts import CONTRACTS, TableContract

# csv refuses fields above 128 KiB by default; a field that long is a broken file, and the reason
# given for it should say so rather than a bare csv.Error.
csv.field_size_limit(1 << 20)


class UnreadableFileError(ValueError):
    """The file is not UTF-8 CSV text: it is rejected whole."""


@dataclass
class RawRow:
    row_number: int  # 1-based data row number in the file (a skipped header row is not counted)
    line_number: int  # physical line where the record starts, for a user opening the file
    fields: list[str]


@dataclass
class FileScan:
    """What the first pass learns about a file before anything is loaded."""

    data_rows: int = 0
    header_skipped: bool = False
    # id -> how many rows of the file carry it, for ids that occur more than once
    duplicate_ids: dict[int, int] = field(default_factory=dict)


def _open_text(path: Path) -> io.TextIOWrapper:
    # utf-8-sig strips a byte-order mark; newline="" lets csv handle CRLF and quoted newlines.
    return open(path, encoding="utf-8-sig", errors="strict", newline="")


def _is_header(fields: list[str], contract: TableContract) -> bool:
    return [f.strip().lower() for f in fields] == list(contract.column_names)


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields) for every non-blank record of the file."""
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle, strict=True)
            line_number = 1
            for fields in reader:
                start = line_number
                line_number = reader.line_num + 1
                if not fields or fields == [""]:
                    continue  # blank line: not a row
                if any("\x00" in value for value in fields):
                    raise UnreadableFileError(
                        f"line {start}: contains NUL bytes; this is a binary file, not CSV text"
                    )
                yield start, fields
    except UnicodeDecodeError as error:
        raise UnreadableFileError(
            f"not UTF-8 text (byte {error.start} of a read block: {error.reason}); "
            "save the extract as UTF-8 CSV and upload it again"
        ) from None
    except csv.Error as error:
        raise UnreadableFileError(f"not parseable as CSV: {error}") from None


def read_rows(path: Path, contract: TableContract) -> Iterator[RawRow]:
    """Every data row of the file, the header row (if present) skipped."""
    row_number = 0
    for index, (line_number, fields) in enumerate(_records(path)):
        if index == 0 and _is_header(fields, contract):
            continue
        row_number += 1
        yield RawRow(row_number, line_number, fields)


def read_chunks(path: Path, contract: TableContract, chunk_rows: int) -> Iterator[list[RawRow]]:
    chunk: list[RawRow] = []
    for row in read_rows(path, contract):
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse_int(text: str) -> int | None:
    """The integer a field holds, or None if it is not a plain integer."""
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        return None
    return int(text)


def scan(path: Path, contract: TableContract) -> FileScan:
    """First pass: read the whole file once, count rows, find ids that occur more than once.

    Ids are held in a compact array of 64-bit integers (8 bytes each), so a 5-million-row file
    costs 40 MB here, not the ~300 MB a Python set would.
    """
    import numpy as np

    result = FileScan()
    key_index = contract.column_names.index(contract.key)
    ids = array("q")
    for index, (_, fields) in enumerate(_records(path)):
        if index == 0 and _is_header(fields, contract):
            result.header_skipped = True
            continue
        result.data_rows += 1
        if key_index < len(fields):
            value = parse_int(fields[key_index])
            if value is not None and -(2**63) <= value < 2**63:
                ids.append(value)
    if ids:
        values, counts = np.unique(np.frombuffer(ids, dtype=np.int64), return_counts=True)
        repeated = counts > 1
        result.duplicate_ids = dict(zip(values[repeated].tolist(), counts[repeated].tolist()))
    return result


def header_of_other_table(fields: list[str], contract: TableContract) -> str | None:
    """The name of another table whose header row this is, for a clearer rejection reason."""
    for other in CONTRACTS.values():
        if other.name != contract.name and _is_header(fields, other):
            return other.name
    return None
