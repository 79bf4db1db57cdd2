"""Streaming reader of the CSV extracts, as the contract describes them.

UTF-8 (a byte-order mark tolerated), LF or CRLF, quoted fields, no header row (a first record
equal to the column names is accepted and skipped). Records come out in chunks so that memory
does not grow with the file. A file that cannot be read as text at all raises
``UnreadableFileError`` before a single row is handed out by ``scan`` - the first pass over every
file - so nothing of it is loaded.

Two readers give the same records: Arrow's (C++, the fast path) and Python's csv module (the
plain path, for a file with a record longer than Arrow's read block). The tests hold both to an
independent reference.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hr_pipeline.contract.field_values import integer_values, normalized_text
from hr_pipeline.contract.tables import CONTRACTS, INTEGER_MAX, INTEGER_MIN, TableContract
from hr_pipeline.runtime.settings import read_block_bytes
from hr_pipeline.runtime.streams import BlocksFile


class UnreadableFileError(ValueError):
    """The file is not UTF-8 CSV text: it is rejected whole."""


@dataclass(slots=True)
class RawRow:
    # 1-based number of the record in the file (blank lines not counted, a header is): not a line
    # number, as a quoted field may span lines
    record_number: int
    fields: list[str]


@dataclass
class FileScan:
    """What the first pass learns about a file before anything is loaded."""

    records: int = 0  # non-blank records, a header row included
    # id -> how many well-formed rows of the file carry it, for ids that occur more than once
    duplicate_ids: dict[int, int] = field(default_factory=dict)
    # a record is longer than Arrow's read block: read the file with the plain reader
    plain_reader: bool = False


def _is_header(fields: list[str], contract: TableContract) -> bool:
    return [f.strip().lower() for f in fields] == list(contract.column_names)


@dataclass
class Chunk:
    """Consecutive records of a file: the well-formed ones column-wise (Arrow string arrays,
    in contract column order), the misshapen ones (wrong number of fields) as ``RawRow``."""

    columns: list  # list[pyarrow.Array] of strings, one per contract column
    record_numbers: object  # numpy int64 array: the record number of each well-formed row
    misshapen: list[RawRow]
    header_skipped: bool = False

    def __len__(self) -> int:
        return len(self.record_numbers) + len(self.misshapen)

    def text_bytes(self) -> int:
        """The bytes of its fields' text (what grows with the width of the rows)."""
        return sum(column.nbytes for column in self.columns) + sum(
            len(field) for row in self.misshapen for field in row.fields
        )

    @classmethod
    def of(cls, rows: list[RawRow], width: int) -> Chunk:
        """A chunk from rows already in memory (tests, small callers)."""
        import numpy as np
        import pyarrow as pa

        good = [row for row in rows if len(row.fields) == width]
        columns = [pa.array([row.fields[i] for row in good], type=pa.string()) for i in range(width)]
        return cls(
            columns,
            np.array([row.record_number for row in good], dtype=np.int64),
            [row for row in rows if len(row.fields) != width],
        )


def _arrow_reader(
    source, contract: TableContract, block_bytes: int, misshapen: list, only: list[str] | None = None
):
    """Arrow's streaming CSV reader on a path or a readable file. Records with the wrong number
    of fields are appended to ``misshapen`` (Arrow's ``InvalidRow``: number and text)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def keep_misshapen(row) -> str:
        misshapen.append(row)
        return "skip"

    names = list(contract.column_names)
    return pacsv.open_csv(
        source,
        # use_threads=False: Arrow then knows each record's number, which placing the
        # misshapen records needs.
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


class _NoBlockEndsInCR(io.RawIOBase):
    """A binary file whose reads never end between a CR and the byte after it.

    Arrow's CSV reader (pyarrow 26) loses the LF of a CRLF inside a quoted field when one of its
    blocks ends between the two ("multi\\r\\nline" comes out as "multi\\rline"); its blocks are
    the reads of its source, so a read that would end in CR keeps that CR for the next one. The
    readers' differential test (test_csv_reader) crosses such block ends.
    """

    def __init__(self, handle):
        self._handle = handle
        self._carry = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        wanted = -1 if size is None or size < 0 else max(size - len(self._carry), 0)
        data = self._carry + self._handle.read(wanted)
        self._carry = b""
        if len(data) > 1 and data.endswith(b"\r"):
            data, self._carry = data[:-1], data[-1:]
        return data

    def close(self) -> None:
        self._handle.close()
        super().close()


def _arrow_source(handle):
    import pyarrow as pa

    return pa.PythonFile(_NoBlockEndsInCR(handle), mode="r")


# The longest record (and field) the plain reader reads, in characters: a file with a longer one
# is unreadable, rejected whole, so that its memory is bounded by this, not by the file (a field
# that long is far beyond the contract's 255 characters: a broken file). Python's csv module
# holds a field as 4 bytes per character, the line read as 1 to 4 more.
PLAIN_READER_FIELD_LIMIT = 16 << 20
# A chunk's text, at most (about): a chunk of wide rows holds fewer than ``chunk_rows`` rows.
CHUNK_BYTES = 8 << 20


class RecordTooLongForBlocks(Exception):
    """A record is longer than Arrow's read block: the file is read by the plain reader."""


def _is_straddling(error: Exception) -> bool:
    return "straddl" in str(error)


def read_chunks(
    path: Path, contract: TableContract, chunk_rows: int, plain: bool = False, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """The file's records in chunks of at least ``chunk_rows`` or ``chunk_bytes`` of text,
    whichever comes first (the last may be smaller), the header row (if any) dropped: memory is
    bounded by bytes, whatever the width of the rows.

    Parsed by Arrow's CSV reader (C++): quoting, CRLF, a byte-order mark and UTF-8 checking are
    handled there. Records with the wrong number of fields come out in ``Chunk.misshapen``;
    nothing is skipped silently. Record numbers count the file's non-blank records from 1, the
    header row included. ``plain`` reads with Python's csv module instead, record by record: the
    way for a file with a record longer than Arrow's block (``FileScan.plain_reader``).
    """
    pending: list[Chunk] = []
    pending_rows = pending_bytes = 0
    batches = (
        _plain_batches(path, contract, chunk_rows, chunk_bytes) if plain else _read_batches(path, contract)
    )
    for batch in batches:
        pending.append(batch)
        pending_rows += len(batch)
        pending_bytes += batch.text_bytes()
        if pending_rows >= chunk_rows or pending_bytes >= chunk_bytes:
            yield _merge(pending)
            pending, pending_rows, pending_bytes = [], 0, 0
    if pending:
        yield _merge(pending)


def use_system_allocator() -> None:
    """Arrow's allocations from here on through malloc instead of its default (mimalloc), which
    keeps freed pages for reuse: a lower peak for the same speed, which is the figure that counts
    for a task process."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def release_arrow_memory() -> None:
    """Give the pages Arrow's allocator keeps after a pass back to the system, so they do not add
    to the next pass's peak."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _merge(parts: list[Chunk]) -> Chunk:
    import numpy as np
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    # Concatenated (a copy): pandas and GX are markedly slower on chunked arrays.
    columns = [pa.concat_arrays([part.columns[i] for part in parts]) for i in range(len(parts[0].columns))]
    return Chunk(
        columns,
        np.concatenate([part.record_numbers for part in parts]),
        [row for part in parts for row in part.misshapen],
        header_skipped=any(part.header_skipped for part in parts),
    )


class _RecordNumbers:
    """Numbers the records of Arrow's batches.

    A batch holds the well-formed records of one block; the misshapen ones are reported to the
    invalid-row handler with their own record number, but not in step with the batches: Arrow
    parses a block ahead, so a report may come while the batch before its own is handed out.
    So nothing is assumed about timing: the well-formed records of a batch are the next numbers
    that no misshapen record has taken, and a misshapen record goes out with the first batch
    that reaches past it (or at the end).
    """

    def __init__(self):
        self.next = 1  # the first number not yet given out
        self.waiting: list = []  # misshapen records reported and not yet placed, by number

    def place(self, good: int, reported: list):
        """(numbers of the batch's ``good`` well-formed records, misshapen records placed with
        them) after ``reported`` more misshapen records."""
        import numpy as np

        for row in reported:
            if row.number is None or row.number < self.next:
                raise RuntimeError(
                    f"the CSV reader reported record {row.number} out of order "
                    f"(expected {self.next} or later): cannot number the records"
                )
        self.waiting.extend(reported)
        self.waiting.sort(key=lambda row: row.number)
        taken = np.array([row.number for row in self.waiting], dtype=np.int64)
        span = np.arange(self.next, self.next + good + len(taken), dtype=np.int64)
        numbers = np.setdiff1d(span, taken, assume_unique=True)[:good] if len(taken) else span
        last = int(numbers[-1]) if good else self.next - 1
        placed = [row for row in self.waiting if row.number <= last]
        self.waiting = self.waiting[len(placed) :]
        self.next = last + 1
        return numbers, placed

    def rest(self) -> list:
        """The misshapen records after the last well-formed one; checks they follow on."""
        rest, self.waiting = self.waiting, []
        expected = list(range(self.next, self.next + len(rest)))
        if [row.number for row in rest] != expected:
            raise RuntimeError("the CSV reader's record numbers have gaps: cannot number the records")
        return rest


def _read_batches(path: Path, contract: TableContract) -> Iterator[Chunk]:
    """One Chunk per block Arrow reads."""
    import numpy as np
    import pyarrow as pa

    misshapen: list = []
    numbering = _RecordNumbers()
    first_batch = True
    handle = open(path, "rb")
    try:
        reader = _arrow_reader(_arrow_source(handle), contract, read_block_bytes(), misshapen)
        for batch in reader:
            reported, misshapen[:] = list(misshapen), []
            numbers, placed = numbering.place(batch.num_rows, reported)
            columns = [pa.array(c) if isinstance(c, pa.ChunkedArray) else c for c in batch.columns]
            odd = [RawRow(int(row.number), _split(row.text)) for row in placed]
            header = bool(
                len(numbers) and numbers[0] == 1 and _is_header([c[0].as_py() for c in columns], contract)
            )
            if header:
                columns = [c.slice(1) for c in columns]
                numbers = numbers[1:]
            yield Chunk(columns, numbers, odd, header_skipped=first_batch and header)
            first_batch = False
        numbering.place(0, list(misshapen))
        if rest := numbering.rest():  # misshapen records after the last well-formed one
            yield Chunk(
                [pa.array([], type=pa.string()) for _ in contract.columns],
                np.array([], dtype=np.int64),
                [RawRow(int(row.number), _split(row.text)) for row in rest],
            )
    except pa.ArrowInvalid as error:
        message = str(error)
        if "UTF8" in message or "UTF-8" in message:
            raise UnreadableFileError(f"not UTF-8 text ({message})") from None
        if "Empty CSV file" in message:
            return
        if _is_straddling(error):
            raise RecordTooLongForBlocks(message) from None
        raise UnreadableFileError(f"not parseable as CSV: {message}") from None
    finally:
        handle.close()


def _bounded_lines(handle, limit: int) -> Iterator[str]:
    """The lines of a text file, none read past ``limit`` characters: a longer one raises
    ``UnreadableFileError`` once ``limit`` characters are in memory, never the whole line."""
    while line := handle.readline(limit + 1):
        if len(line) > limit:
            raise UnreadableFileError(
                f"a line is longer than {limit:,} characters (the longest record the reader reads)"
            )
        yield line


def _plain_batches(path: Path, contract: TableContract, batch_rows: int, batch_bytes: int) -> Iterator[Chunk]:
    """Chunks read with Python's csv module: the same records, numbers and header rule as
    ``_read_batches``, for files with a record longer than Arrow's block. A chunk ends at
    ``batch_rows`` records or ``batch_bytes`` characters of fields."""
    import numpy as np
    import pyarrow as pa

    width = len(contract.columns)
    limit = csv.field_size_limit()
    csv.field_size_limit(PLAIN_READER_FIELD_LIMIT)
    try:
        with open(path, encoding="utf-8-sig", errors="strict", newline="") as handle:
            columns: list[list[str]] = [[] for _ in range(width)]
            numbers: list[int] = []
            odd: list[RawRow] = []
            header = False
            number = characters = 0
            try:
                for fields in csv.reader(_bounded_lines(handle, PLAIN_READER_FIELD_LIMIT)):
                    if not fields:  # a blank line is not a record
                        continue
                    number += 1
                    if number == 1 and _is_header(fields, contract):
                        header = True
                        continue
                    characters += sum(map(len, fields))
                    if len(fields) == width:
                        numbers.append(number)
                        for column, value in zip(columns, fields):
                            column.append(value)
                    else:
                        odd.append(RawRow(number, fields))
                    if len(numbers) + len(odd) >= batch_rows or characters >= batch_bytes:
                        yield Chunk(
                            [pa.array(c, type=pa.string()) for c in columns],
                            np.array(numbers, dtype=np.int64),
                            odd,
                            header_skipped=header,
                        )
                        columns, numbers, odd, header = [[] for _ in range(width)], [], [], False
                        characters = 0
            except csv.Error as error:
                raise UnreadableFileError(f"not parseable as CSV after record {number}: {error}") from None
            if numbers or odd or header:
                yield Chunk(
                    [pa.array(c, type=pa.string()) for c in columns],
                    np.array(numbers, dtype=np.int64),
                    odd,
                    header_skipped=header,
                )
    finally:
        csv.field_size_limit(limit)


def _split(text: str) -> list[str]:
    """The fields of one record's text, as the CSV reader would split them."""
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return text.split(",")


def scan(path: Path, contract: TableContract) -> FileScan:
    """``scan_blocks`` of a local file, by the plain reader if Arrow's blocks cannot hold a
    record."""

    def blocks():
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                yield block

    result = scan_blocks(blocks(), contract)
    if not result.plain_reader:
        return result
    checked = _CheckedText(blocks())
    for _ in checked:
        pass
    checked.finish()
    return scan_plain(path, contract)


def _key_ids(text) -> object:
    """The ids a key column holds that can be ids (integers of the 32-bit range), as int32."""
    import numpy as np

    values = integer_values(normalized_text(text)) if len(text) else np.array([], dtype=np.float64)
    return values[(values >= INTEGER_MIN) & (values <= INTEGER_MAX)].astype(np.int32)


def _duplicates(ids: list) -> dict[int, int]:
    import numpy as np

    if not ids:
        return {}
    # Sorted in place, duplicates are equal neighbours: no copy of the ids beyond the one
    # concatenation (np.unique would make several).
    all_ids = np.concatenate(ids)
    ids.clear()
    all_ids.sort()
    repeated = all_ids[1:][all_ids[1:] == all_ids[:-1]]
    if not repeated.size:
        return {}
    values, counts = np.unique(repeated, return_counts=True)
    return dict(zip(values.tolist(), (counts + 1).tolist()))


def scan_plain(path: Path, contract: TableContract) -> FileScan:
    """``scan_blocks`` by the plain reader, of a file already checked to be UTF-8 text."""
    result = FileScan(plain_reader=True)
    ids: list = []
    key = contract.column_names.index(contract.key)
    for chunk in read_chunks(path, contract, 100_000, plain=True):
        result.records += len(chunk) + int(chunk.header_skipped)
        ids.append(_key_ids(chunk.columns[key]))
    result.duplicate_ids = _duplicates(ids)
    return result


def scan_blocks(blocks: Iterable[bytes], contract: TableContract) -> FileScan:
    """First pass: check the whole file is UTF-8 text, count records, find ids that occur more
    than once in well-formed records. The file comes as blocks of bytes, so the pass can run while
    it downloads.

    Raises ``UnreadableFileError`` for a file that is not UTF-8 CSV text, before anything of it
    is loaded. Only the key column is converted, and ids are held as 32-bit integers, read by the
    validation's own definition of an integer (``field_values.integer_values``): 4 bytes per
    record here (figures in benchmarks/RESULTS.md). If a record is longer than Arrow's block the result says only
    ``plain_reader``: the caller scans a whole local copy of the file with ``scan``.
    """
    import pyarrow as pa

    checked = _CheckedText(blocks)
    result = FileScan()
    ids: list = []
    misshapen: list = []
    try:
        source = _arrow_source(io.BufferedReader(BlocksFile(checked)))
        reader = _arrow_reader(source, contract, read_block_bytes(), misshapen, only=[contract.key])
        for batch in reader:
            result.records += batch.num_rows + len(misshapen)
            misshapen.clear()
            ids.append(_key_ids(batch.column(0)))
        result.records += len(misshapen)
    except UnreadableFileError:
        raise
    except Exception as error:
        if checked.failure is not None:  # raised inside Arrow's read: the first reason stands
            raise checked.failure from None
        if not isinstance(error, pa.ArrowInvalid):
            raise
        if _is_straddling(error):
            # Arrow may still hold a read of the blocks in its I/O thread: they are left alone,
            # and the caller reads the file again with ``scan`` on a whole local copy.
            return FileScan(plain_reader=True)
        if "Empty CSV file" not in str(error):
            raise UnreadableFileError(f"not parseable as CSV: {error}") from None
    checked.finish()  # the end of the file too must be whole UTF-8 text
    release_arrow_memory()
    result.duplicate_ids = _duplicates(ids)
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
            self._fail(
                f"not UTF-8 text (byte {self._offset + error.start}: {error.reason}); "
                "save the extract as UTF-8 CSV and upload it again"
            )
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
