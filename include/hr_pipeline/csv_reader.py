"""Streaming reader of the CSV extracts, as the SPEC describes them.

UTF-8 (a byte-order mark tolerated), LF or CRLF, quoted fields, no header row (a first row equal
to the column names is accepted and skipped). Rows come out in chunks so that memory does not grow
with the file. A file that cannot be read as text at all raises ``UnreadableFileError`` before a
single row is handed out by ``scan`` - the first pass over every file - so nothing of it is loaded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hr_pipeline.contracts import CONTRACTS, INTEGER_MAX, INTEGER_MIN, TableContract
from hr_pipeline.streams import BlocksFile

# csv refuses fields above 128 KiB by default; a field that long is a broken file, and the reason
# given for it should say so rather than a bare csv.Error.
csv.field_size_limit(1 << 20)


class UnreadableFileError(ValueError):
    """The file is not UTF-8 CSV text: it is rejected whole."""


@dataclass(slots=True)
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


@dataclass
class Chunk:
    """Consecutive records of a file: the well-formed ones column-wise (Arrow string arrays,
    in contract column order), the misshapen ones (wrong number of fields) as ``RawRow``."""

    columns: list  # list[pyarrow.Array] of strings, one per contract column
    row_numbers: "object"  # numpy int64 array: record number of each well-formed row
    misshapen: list[RawRow]
    header_skipped: bool = False

    def __len__(self) -> int:
        return len(self.row_numbers) + len(self.misshapen)

    def fields(self, position: int) -> list[str]:
        return [column[position].as_py() or "" for column in self.columns]

    def __iter__(self) -> Iterator[RawRow]:
        rows = [RawRow(int(n), int(n), self.fields(i)) for i, n in enumerate(self.row_numbers)]
        return iter(sorted(rows + self.misshapen, key=lambda row: row.row_number))

    @classmethod
    def of(cls, rows: list[RawRow], width: int) -> "Chunk":
        """A chunk from rows already in memory (tests, small callers)."""
        import numpy as np
        import pyarrow as pa

        good = [row for row in rows if len(row.fields) == width]
        columns = [pa.array([row.fields[i] for row in good], type=pa.string()) for i in range(width)]
        return cls(columns, np.array([row.row_number for row in good], dtype=np.int64),
                   [row for row in rows if len(row.fields) != width])


def _arrow_reader(source, contract: TableContract, block_bytes: int, misshapen: list,
                  only: list[str] | None = None):
    """Arrow's streaming CSV reader on a path or a readable file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def keep_misshapen(row) -> str:
        misshapen.append(row)
        return "skip"

    names = list(contract.column_names)
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=block_bytes),
        parse_options=pacsv.ParseOptions(
            newlines_in_values=True, ignore_empty_lines=True, invalid_row_handler=keep_misshapen
        ),
        convert_options=pacsv.ConvertOptions(
            include_columns=only,
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


# Arrow's streaming CSV reader holds memory in proportion to its block size (measured: 241 MB of
# its pool for 5M rows with 12.8 MB blocks, 36 MB with 1 MB blocks, 9 MB with 256 KB blocks), so
# it reads small blocks and the batches are gathered into chunks of the size validation wants.
READ_BLOCK_BYTES = 1 << 18


def read_chunks(path: Path, contract: TableContract, chunk_rows: int) -> Iterator[Chunk]:
    """The file's records in chunks of at least ``chunk_rows`` (the last may be smaller), the
    header row (if any) dropped.

    Parsed by Arrow's CSV reader (C++): quoting, CRLF, a byte-order mark and UTF-8 checking are
    handled there. Records with the wrong number of fields are handed to us one by one, with their
    record number and text, and come out in ``Chunk.misshapen``; nothing is skipped silently.
    Row numbers count the file's non-blank records from 1, the header row included.
    """
    pending: list[Chunk] = []
    pending_rows = 0
    for batch in _read_batches(path, contract):
        pending.append(batch)
        pending_rows += len(batch)
        if pending_rows >= chunk_rows:
            yield _merge(pending)
            pending, pending_rows = [], 0
    if pending:
        yield _merge(pending)


def use_system_allocator() -> None:
    """Arrow's allocations from here on through malloc instead of its default (mimalloc), which
    keeps freed pages for reuse: measured over 1M rows in chunks of 200,000, a peak 28 MB lower
    for the same speed. For a task process, whose peak memory is the figure that counts."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def release_arrow_memory() -> None:
    """Give the pages Arrow's allocator keeps after a pass back to the system (measured: 70 MB
    kept after the first pass over 1M rows), so they do not add to the next pass's peak."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _merge(parts: list[Chunk]) -> Chunk:
    import numpy as np
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    # Concatenated (a copy): pandas and GX are markedly slower on chunked arrays.
    columns = [pa.concat_arrays([part.columns[i] for part in parts]) for i in range(len(parts[0].columns))]
    return Chunk(columns, np.concatenate([part.row_numbers for part in parts]),
                 [row for part in parts for row in part.misshapen],
                 header_skipped=any(part.header_skipped for part in parts))


def _read_batches(path: Path, contract: TableContract) -> Iterator[Chunk]:
    """One Chunk per block Arrow reads."""
    import numpy as np
    import pyarrow as pa

    misshapen: list = []
    next_record = 1
    first = first_batch = True
    try:
        reader = _arrow_reader(path, contract, READ_BLOCK_BYTES, misshapen)
        for batch in reader:
            reported, misshapen[:] = list(misshapen), []
            bad_numbers = np.array([row.number for row in reported], dtype=np.int64)
            span = np.arange(next_record, next_record + batch.num_rows + len(reported), dtype=np.int64)
            next_record += len(span)
            numbers = np.setdiff1d(span, bad_numbers, assume_unique=True) if len(reported) else span
            columns = list(batch.columns)
            odd = [RawRow(int(row.number), int(row.number), _split(row.text)) for row in reported]
            header_first = False
            if first:
                first = False
                header_first = bool(len(numbers) and numbers[0] == 1 and _is_header(
                    [c[0].as_py() for c in columns], contract))
                if header_first:
                    columns = [c.slice(1) for c in columns]
                    numbers = numbers[1:]
            yield Chunk([pa.array(c) if isinstance(c, pa.ChunkedArray) else c for c in columns],
                        numbers, odd, header_skipped=first_batch and header_first)
            first_batch = False
        if misshapen:  # records reported after the last batch (a file of only misshapen rows)
            numbers = [int(row.number) for row in misshapen]
            yield Chunk([pa.array([], type=pa.string()) for _ in contract.columns],
                        np.array([], dtype=np.int64),
                        [RawRow(n, n, _split(row.text)) for n, row in zip(numbers, misshapen)])
    except pa.ArrowInvalid as error:
        message = str(error)
        if "UTF8" in message or "UTF-8" in message:
            raise UnreadableFileError(f"not UTF-8 text ({message})") from None
        if "Empty CSV file" in message:
            return
        raise UnreadableFileError(f"not parseable as CSV: {message}") from None


def _split(text: str) -> list[str]:
    """The fields of one record's text, as the CSV reader would split them."""
    return next(csv.reader([text]), [])


def read_rows(path: Path, contract: TableContract) -> Iterator[RawRow]:
    """Every data row of the file in order, the header row (if present) skipped."""
    for chunk in read_chunks(path, contract, 10_000):
        yield from chunk


def parse_int(text: str) -> int | None:
    """The integer a field holds, or None if it is not a plain integer."""
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        return None
    return int(text)


def scan(path: Path, contract: TableContract) -> FileScan:
    """``scan_blocks`` of a local file."""

    def blocks():
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                yield block

    return scan_blocks(blocks(), contract)


def scan_blocks(blocks: Iterable[bytes], contract: TableContract) -> FileScan:
    """First pass: check the whole file is UTF-8 text, count rows, find ids that occur more
    than once. The file comes as blocks of bytes, so the pass can run while it downloads.

    Raises ``UnreadableFileError`` for a file that is not UTF-8 CSV text, before anything of it
    is loaded. Only the key column is converted, and ids are held as 32-bit integers ("02" and
    "2" are one id), so a 5-million-row file costs about 20 MB here.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    checked = _CheckedText(blocks)
    result = FileScan()
    ids: list = []
    misshapen: list = []
    first = True
    try:
        source = pa.PythonFile(io.BufferedReader(BlocksFile(checked)), mode="r")
        reader = _arrow_reader(source, contract, READ_BLOCK_BYTES, misshapen, only=[contract.key])
        for batch in reader:
            keys = pc.utf8_trim_whitespace(batch.column(0))
            if first and len(keys):
                first = False
                # A header row's key field is the key's name (other fields are not read here).
                result.header_skipped = keys[0].as_py().lower() == contract.key and not misshapen
            result.data_rows += len(keys) + len(misshapen)
            misshapen.clear()
            try:  # a block of plain integers (the common case) in one cast
                values = pc.cast(batch.column(0), pa.int64()).drop_null()
            except pa.ArrowInvalid:  # "+5", " 5", text: only the integers are counted
                plain = pc.match_substring_regex(keys, r"^[+-]?[0-9]{1,18}$")
                digits = pc.replace_substring_regex(
                    pc.if_else(plain, keys, pa.scalar(None, pa.string())), r"^\+", "")
                values = pc.cast(digits, pa.int64()).drop_null()
            # Held as 32-bit integers, the range of a valid id: an id outside it is rejected by
            # the range rule anyway, and is left out of the duplicate count.
            in_range = pc.and_(pc.greater_equal(values, INTEGER_MIN), pc.less_equal(values, INTEGER_MAX))
            ids.append(values.filter(in_range).cast(pa.int32()).to_numpy())
        result.data_rows += len(misshapen)
    except UnreadableFileError:
        raise
    except Exception as error:
        if checked.failure is not None:  # raised inside Arrow's read: the first reason stands
            raise checked.failure from None
        if not isinstance(error, pa.ArrowInvalid):
            raise
        if "Empty CSV file" not in str(error):
            raise UnreadableFileError(f"not parseable as CSV: {error}") from None
    checked.finish()  # the end of the file too must be whole UTF-8 text
    result.data_rows -= int(result.header_skipped)
    release_arrow_memory()
    if ids:
        # Sorted in place, duplicates are equal neighbours: no copy of the ids beyond the one
        # concatenation (np.unique would make several).
        all_ids = np.concatenate(ids)
        ids.clear()
        all_ids.sort()
        repeated = all_ids[1:][all_ids[1:] == all_ids[:-1]]
        if repeated.size:
            values, counts = np.unique(repeated, return_counts=True)
            result.duplicate_ids = dict(zip(values.tolist(), (counts + 1).tolist()))
    return result


class _CheckedText:
    """Blocks of a file, each checked before it is handed on: UTF-8 text without NUL bytes (a
    NUL never occurs in CSV text: it means a binary file). At C speed, in constant memory."""

    def __init__(self, blocks: Iterable[bytes]):
        import codecs

        self._blocks = blocks
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._offset = 0
        self._drained = False
        self.failure: UnreadableFileError | None = None

    def __iter__(self) -> Iterator[bytes]:
        for block in self._blocks:
            self._check(block)
            yield block
        self._drained = True

    def _check(self, block: bytes) -> None:
        position = block.find(b"\x00")
        if position >= 0:
            self._fail(f"byte {self._offset + position} is a NUL byte: this is a binary file, not CSV text")
        try:
            self._decoder.decode(block)
        except UnicodeDecodeError as error:
            self._fail(f"not UTF-8 text (byte {self._offset + error.start}: {error.reason}); "
                       "save the extract as UTF-8 CSV and upload it again")
        self._offset += len(block)

    def finish(self) -> None:
        if not self._drained:  # Arrow stopped before the end (it does not, but be sure)
            for _ in self:
                pass
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            self._fail(f"not UTF-8 text: the file ends inside a character ({error.reason})")

    def _fail(self, reason: str) -> None:
        self.failure = UnreadableFileError(reason)
        raise self.failure


def header_of_other_table(fields: list[str], contract: TableContract) -> str | None:
    """The name of another table whose header row this is, for a clearer rejection reason."""
    for other in CONTRACTS.values():
        if other.name != contract.name and _is_header(fields, other):
            return other.name
    return None
