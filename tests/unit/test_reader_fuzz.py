"""Bounded fuzz of the reader and the validator, function by function, against the reference.

Each generated file goes through the same calls as ``hr_pipeline.ingest.validate.validate_file``, without
Blob Storage: ``scan_blocks`` on the bytes cut into blocks of random sizes (as a download
delivers them; ``scan_plain`` when it asks for the plain reader), then ``read_chunks`` and a
``ChunkValidator`` per file, with small Arrow read blocks (``HR_READ_BLOCK_BYTES``, 1-4 KiB) and
small chunks, so that records straddle block and chunk ends. What each test proves, for every
generated file:

- the only exception ever raised is ``UnreadableFileError``, and it is raised exactly for the
  files the contract calls unreadable (NUL byte or invalid UTF-8);
- the scan's record count, the chunks' well-formed + misshapen rows and the misshapen count are
  the reference's; valid + rejected = data rows in every chunk;
- each rejected row's record number and set of (rule, column) is the reference's, its fields
  (rows with the right number of fields) are the raw fields of the file;
- the valid rows, typed, in order, are the reference's loaded rows.

Bounded by counts (Hypothesis ``max_examples``, derandomized; seeded cases), not by time.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hr_pipeline.contract.instants import parse_stored_timestamp
from hr_pipeline.contract.tables import CONTRACTS
from hr_pipeline.ingest.reader import UnreadableFileError, read_chunks, scan_blocks, scan_plain
from tests.reference.contract import (
    TABLES,
    Observed,
    differences,
    reference_file,
)
from tests.reference.extracts import Mess, extract_bytes, messy_extract, random_mess
from tests.reference.observing import note_rejected

# The ids the referenced tables hold "in the warehouse" while the files are validated.
KNOWN = {"departments": {1, 2, 3, 5, 8, -4}, "jobs": {1, 2, 3, 40}}

FUZZ = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@contextmanager
def read_block(size: int):
    previous = os.environ.get("HR_READ_BLOCK_BYTES")
    os.environ["HR_READ_BLOCK_BYTES"] = str(size)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HR_READ_BLOCK_BYTES", None)
        else:
            os.environ["HR_READ_BLOCK_BYTES"] = previous


def pieces(data: bytes, rng: random.Random):
    """The bytes in blocks of random sizes (1 byte to 5 KB), as a download might deliver them."""
    at = 0
    while at < len(data):
        size = rng.choice([1, 2, 3, 7, 64, 1000, 4096, 5000])
        yield data[at : at + size]
        at += size


def typed(table: str, row: dict) -> tuple:
    values = []
    for column in TABLES[table]:
        value = row[column.name]
        values.append(parse_stored_timestamp(value) if column.type == "timestamp" else value)
    return tuple(values)


def run_functions(table: str, data: bytes, path: Path, chunk_rows: int, block: int, seed: int) -> Observed:
    """The file through scan, read_chunks and ChunkValidator, as validate_file calls them."""
    from hr_pipeline.ingest.expectations import ChunkValidator

    contract = CONTRACTS[table]
    path.write_bytes(data)
    keys = {
        ref: KNOWN[ref] for ref in ("departments", "jobs") if any(c.references == ref for c in TABLES[table])
    }
    observed = Observed(data_rows=0, valid=0, loaded=[], misshapen=0, header_skipped=False)
    with read_block(block):
        try:
            file_scan = scan_blocks(pieces(data, random.Random(seed)), contract)
            if file_scan.plain_reader:
                file_scan = scan_plain(path, contract)
        except UnreadableFileError:
            return Observed(unreadable=True)
        validator = ChunkValidator(contract, keys, file_scan.duplicate_ids)
        for chunk in read_chunks(path, contract, chunk_rows, plain=file_scan.plain_reader):
            checked = validator.validate(chunk)
            assert checked.valid_count + len(checked.rejected) == len(chunk), "chunk invariant"
            observed.data_rows += len(chunk)
            observed.misshapen += len(chunk.misshapen)
            observed.header_skipped |= bool(chunk.header_skipped)
            observed.valid += checked.valid_count
            observed.loaded += [typed(table, row) for row in checked.valid.to_pylist()]
            for rejected in checked.rejected:
                number = note_rejected(observed, table, rejected.reason, list(rejected.fields))
                assert number == rejected.record_number, rejected.reason
    assert file_scan.records == observed.data_rows + observed.header_skipped, (
        f"the scan counted {file_scan.records} records, the chunks {observed.data_rows} rows"
        f" + header {observed.header_skipped}"
    )
    return observed


def check(table: str, data: bytes, tmp_path: Path, chunk_rows: int, block: int, seed: int = 0):
    expected = reference_file(table, data, KNOWN)
    observed = run_functions(table, data, tmp_path / "extract.csv", chunk_rows, block, seed)
    problems = differences(expected, observed, data)
    assert not problems, (
        f"{table}, chunk_rows={chunk_rows}, block={block}, {len(data)} bytes:\n  "
        + "\n  ".join(problems)
        + f"\nfile: {data[:1500]!r}"
    )


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def files(**options):
    return st.sampled_from(list(TABLES)).flatmap(
        lambda table: st.tuples(
            st.just(table),
            extract_bytes(table, sorted(KNOWN["departments"]), sorted(KNOWN["jobs"]), **options),
        )
    )


@FUZZ
@given(
    case=files(max_rows=30), chunk_rows=st.sampled_from([3, 7, 50]), block=st.sampled_from([1024, 1500, 4096])
)
def test_generated_files_read_and_validate_as_the_reference_says(fuzz_dir, case, chunk_rows, block):
    """100 Hypothesis files (0-30 rows each, of the three tables) with every rule broken, BOMs,
    headers, blank lines, quoted line breaks, whitespace of every kind: the pipeline's reader and
    validator agree with the reference on every row."""
    table, data = case
    check(table, data, fuzz_dir, chunk_rows, block)


@settings(FUZZ, max_examples=60)
@given(
    case=files(max_rows=20, odd_quoting=True, unreadable=True),
    chunk_rows=st.sampled_from([7, 50]),
    block=st.sampled_from([1024, 4096]),
)
def test_odd_quoting_and_unreadable_files(fuzz_dir, case, chunk_rows, block):
    """60 Hypothesis files with quotes inside unquoted fields, text after a closing quote, a
    quote before which there is a space, lone CR line ends, a quote left open at the end, and
    (one in five) a NUL byte or invalid UTF-8: records are those of Python's csv module, and a
    file is unreadable exactly when the contract says so."""
    table, data = case
    check(table, data, fuzz_dir, chunk_rows, block)


SEEDED = [  # (seed, table, rows, chunk_rows, block bytes, fixed mess)
    (1, "hired_employees", 1500, 333, 1024, {}),
    (2, "hired_employees", 800, 50, 2048, {"misshapen_rate": 0.2}),
    (3, "departments", 1200, 400, 1024, {"duplicate_rate": 0.2}),
    (4, "jobs", 900, 300, 4096, {"long_field_rate": 0.05}),
    (5, "hired_employees", 600, 200, 1024, {"huge_field_rate": 0.005}),
    (6, "hired_employees", 1000, 250, 3000, {"bad_rate": 1.0, "header": "exact", "bom": True}),
    (7, "jobs", 700, 100, 1024, {"odd_quoting": True}),
    (8, "hired_employees", 1200, 600, 1024, {"line_ends": "crlf", "quote_rate": 1.0, "padding_rate": 0.5}),
    (9, "departments", 400, 37, 1024, {"blank_line_rate": 0.3, "final_newline": False}),
    (10, "hired_employees", 1500, 500, 4096, {"tricky_rate": 0.6}),
]


@pytest.mark.parametrize(
    ("seed", "table", "rows", "chunk_rows", "block", "fixed"),
    SEEDED,
    ids=[f"seed{case[0]}-{case[1]}" for case in SEEDED],
)
def test_seeded_larger_files(tmp_path, seed, table, rows, chunk_rows, block, fixed):
    """10 seeded files of 400-1,500 rows (about 9,400 in all), each crossing dozens of read
    blocks and several chunks: misshapen rows, duplicates near and far, long fields, records
    longer than the read block (the plain reader), all-bad files, CRLF and full quoting, blank
    lines. Same assertions as above."""
    mess = random_mess(random.Random(seed), **fixed)
    data = messy_extract(table, rows, seed, KNOWN["departments"], KNOWN["jobs"], mess=mess)
    check(table, data, tmp_path, chunk_rows, block, seed)


def test_a_misshapen_row_in_every_position_around_chunk_and_block_ends(tmp_path):
    """One misshapen record at each position 1-40 of a 40-row file, chunks of 7, blocks of
    1 KiB: it keeps its own record number and the rows around it theirs."""
    base = messy_extract(
        "jobs",
        40,
        99,
        mess=Mess(
            bad_rate=0,
            misshapen_rate=0,
            duplicate_rate=0,
            tricky_rate=0,
            padding_rate=0,
            blank_line_rate=0,
            long_field_rate=0,
            header="none",
            bom=False,
            line_ends="lf",
            final_newline=True,
        ),
    )
    lines = base.split(b"\n")
    for position in range(40):
        data = b"\n".join(lines[:position] + [b"1,x,extra"] + lines[position:])
        check("jobs", data, tmp_path, 7, 1024)
