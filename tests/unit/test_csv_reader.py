"""Reading the extracts: encodings, line ends, quoting, headers, unreadable files; the Arrow and
the plain reader giving the same records wherever a block or a chunk ends."""

import csv
import io
import random

import pytest

from hr_pipeline.contract.tables import CONTRACTS
from hr_pipeline.ingest.reader import UnreadableFileError, read_chunks, scan

JOBS = CONTRACTS["jobs"]
HIRES = CONTRACTS["hired_employees"]


def write(tmp_path, data: bytes | str, name="f.csv"):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def records_of(path, contract=JOBS, chunk_rows=10_000, plain=False, chunk_bytes=None):
    """The file's data records as (record number, fields), in file order, from its chunks."""
    records = []
    bounds = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    for chunk in read_chunks(path, contract, chunk_rows, plain=plain, **bounds):
        columns = [column.to_pylist() for column in chunk.columns]
        well_formed = [(int(n), [c[i] for c in columns]) for i, n in enumerate(chunk.record_numbers)]
        misshapen = [(row.record_number, row.fields) for row in chunk.misshapen]
        records += sorted(well_formed + misshapen)
    return records


def fields(path, contract=JOBS):
    return [values for _, values in records_of(path, contract)]


def test_plain_lf(tmp_path):
    assert fields(write(tmp_path, "1,Nurse\n2,Teacher\n")) == [["1", "Nurse"], ["2", "Teacher"]]


def test_crlf_and_bom_and_header(tmp_path):
    path = write(tmp_path, "\ufeffid,job\r\n1,Nurse\r\n2,Teacher\r\n")
    assert fields(path) == [["1", "Nurse"], ["2", "Teacher"]]
    assert [chunk.header_skipped for chunk in read_chunks(path, JOBS, 10)] == [True]
    assert scan(path, JOBS).records == 3


def test_header_is_only_skipped_on_the_first_row(tmp_path):
    path = write(tmp_path, "1,Nurse\nid,job\n")
    assert fields(path) == [["1", "Nurse"], ["id", "job"]]


def test_quoted_fields_with_commas_quotes_and_newlines(tmp_path):
    path = write(tmp_path, '1,"Doe, Jane ""JD"""\n2,"Two\nlines"\n3,x\n')
    assert records_of(path) == [  # numbered by record, not by physical line
        (1, ["1", 'Doe, Jane "JD"']),
        (2, ["2", "Two\nlines"]),
        (3, ["3", "x"]),
    ]


def test_non_ascii(tmp_path):
    assert fields(write(tmp_path, "1,Zoë Ångström 李\n")) == [["1", "Zoë Ångström 李"]]


def test_empty_file_and_header_only_file_have_no_rows(tmp_path):
    assert fields(write(tmp_path, "", "empty.csv")) == []
    assert scan(write(tmp_path, "", "empty.csv"), JOBS).records == 0
    header_only = write(tmp_path, "id,job\r\n", "header.csv")
    assert fields(header_only) == []
    assert scan(header_only, JOBS).records == 1


def test_blank_lines_are_not_rows(tmp_path):
    assert fields(write(tmp_path, "1,a\n\n2,b\n\n")) == [["1", "a"], ["2", "b"]]


def test_wrong_number_of_fields_is_kept_for_the_validator(tmp_path):
    assert fields(write(tmp_path, "1\n2,a,b\n")) == [["1"], ["2", "a", "b"]]


@pytest.mark.parametrize("data", [b"1,caf\xe9\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_not_utf8_or_binary_is_unreadable(tmp_path, data):
    with pytest.raises(UnreadableFileError):
        scan(write(tmp_path, data), JOBS)


def test_nul_bytes_make_a_file_binary(tmp_path):
    with pytest.raises(UnreadableFileError, match="NUL"):
        scan(write(tmp_path, b"1,a\x00b\n"), JOBS)


def test_scan_counts_duplicate_ids_by_integer_value(tmp_path):
    path = write(tmp_path, "1,a\n2,b\n1,c\n+2,d\n02,e\n3,f\nx,g\n")
    result = scan(path, JOBS)
    assert result.records == 7
    assert result.duplicate_ids == {1: 2, 2: 3}


def test_scan_reads_ids_as_the_validation_does(tmp_path):
    """'1', '+1', ' 01 ' and nineteen digits with leading zeros are one id, in a block of plain
    integers and in a block where the one-cast path fails."""
    plain = write(tmp_path, "1,a\n0000000000000000001,b\n2,c\n", "plain.csv")
    assert scan(plain, JOBS).duplicate_ids == {1: 2}
    mixed = write(tmp_path, "x,z\n1,a\n0000000000000000001,b\n+1,c\n 01 ,d\n", "mixed.csv")
    assert scan(mixed, JOBS).duplicate_ids == {1: 4}


def test_misshapen_rows_do_not_count_as_ids(tmp_path):
    assert scan(write(tmp_path, "1,a\n1,b,c\n1\n"), JOBS).duplicate_ids == {}


def test_chunks_cover_every_row_once(tmp_path):
    path = write(tmp_path, "".join(f"{i},job {i}\n" for i in range(1, 26)))
    chunks = list(read_chunks(path, JOBS, 10))
    assert sum(len(c) for c in chunks) == 25
    assert [int(n) for c in chunks for n in c.record_numbers] == list(range(1, 26))


def test_misshapen_rows_keep_their_position_and_text(tmp_path):
    path = write(tmp_path, 'id,job\n1,a\n2\n\n3,"x, y",z\n4,b\n')
    assert records_of(path) == [
        (2, ["1", "a"]),
        (3, ["2"]),
        (4, ["3", "x, y", "z"]),
        (5, ["4", "b"]),
    ]


def test_scan_leaves_ids_outside_the_integer_range_to_the_range_rule(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("2147483648,a\n2147483648,b\n-2147483648,c\n-2147483648,d\n2147483647,e\n")
    result = scan(path, JOBS)
    assert result.records == 5
    assert result.duplicate_ids == {-2147483648: 2}


def expected_records(data: str, width: int):
    """The records as Python's csv module reads them, numbered as the reader numbers them (blank
    lines skipped): an oracle for the placement of misshapen records."""
    records = [r for r in csv.reader(io.StringIO(data, newline="")) if r]
    return [(n, r) for n, r in enumerate(records, start=1)]


@pytest.mark.parametrize("position", [1, 2, 50, 4_999, 6_700, 9_999, 10_000, 10_001])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_misshapen_row_anywhere_keeps_rows_and_numbers_aligned(tmp_path, monkeypatch, position, line_end):
    """The crash of a 10,000-row file with one 4-field row past the first block: every record
    keeps its own number and fields, in blocks of 1 KiB and of the default size."""
    lines = [f"{i},Name {i},2021-01-01T00:00:00Z,1,1" for i in range(1, 10_001)]
    lines.insert(position - 1, "99999,short,2021-01-01T00:00:00Z,1")
    data = line_end.join(lines) + line_end
    path = write(tmp_path, data)
    expected = expected_records(data, 5)
    for block in ("1024", str(1 << 18)):
        monkeypatch.setenv("HR_READ_BLOCK_BYTES", block)
        assert records_of(path, HIRES, 3_000) == expected
        assert scan(path, HIRES).records == len(expected)


def test_arrow_and_plain_readers_agree_on_random_files(tmp_path, monkeypatch):
    """Seeded random files of good, short, long, quoted and blank records: Arrow's reader (in
    small blocks and chunks) and the plain reader both give exactly what csv.reader gives."""
    monkeypatch.setenv("HR_READ_BLOCK_BYTES", "1024")
    pieces = ["{i},job {i}", "{i}", "{i},a,b", '{i},"x, ""y""\nz"', "", '{i},"multi\r\nline"', " ,  "]
    for seed in range(40):
        rng = random.Random(seed)
        end = rng.choice(["\n", "\r\n"])
        lines = [rng.choice(pieces).format(i=i) for i in range(rng.randint(1, 600))]
        data = ("\ufeff" if seed % 3 == 0 else "") + end.join(lines) + (end if seed % 2 else "")
        path = write(tmp_path, data.encode(), f"f{seed}.csv")
        expected = expected_records(data.lstrip("\ufeff"), 2)
        if expected and [f.strip().lower() for f in expected[0][1]] == ["id", "job"]:
            expected = expected[1:]
        chunk_rows = rng.choice([1, 7, 100, 10_000])
        assert records_of(path, JOBS, chunk_rows) == expected, seed
        assert records_of(path, JOBS, chunk_rows, plain=True) == expected, seed


@pytest.mark.parametrize("quoted", [True, False])
def test_a_record_longer_than_a_block_is_read_by_the_plain_reader(tmp_path, monkeypatch, quoted):
    """A 3 MB field (the default block is 256 KiB): the scan says so, and the plain reader gives
    that record and every other one, for the validation's length rule to reject."""
    long = "x" * 3_000_000
    data = f"1,a\n2,{chr(34) + long + chr(34) if quoted else long}\n3,c\n"
    path = write(tmp_path, data)
    result = scan(path, JOBS)
    assert result.plain_reader is True
    assert result.records == 3
    assert result.duplicate_ids == {}
    assert records_of(path, JOBS, 10, plain=True) == [(1, ["1", "a"]), (2, ["2", long]), (3, ["3", "c"])]


def test_chunks_of_wide_rows_are_bounded_by_bytes_and_give_the_same_records(tmp_path, monkeypatch):
    """Seeded random files of rows of every width, read in chunks bounded by a few hundred bytes
    (a chunk ends inside, at and past a block's worth of rows) and by none: the same records as
    csv.reader gives, by both readers; every chunk but the last under the bound plus one block."""
    monkeypatch.setenv("HR_READ_BLOCK_BYTES", "8192")
    for seed in range(20):
        rng = random.Random(seed)
        lines = [f'{i},"{"w" * rng.choice([0, 1, 40, 700, 3000])}"' for i in range(1, rng.randint(2, 300))]
        lines.insert(rng.randrange(len(lines)), "7,a,b")  # a misshapen record among them
        data = "\n".join(lines) + "\n"
        path = write(tmp_path, data, f"w{seed}.csv")
        expected = expected_records(data, 2)
        chunk_bytes = rng.choice([1, 100, 900, 5000])
        for plain in (False, True):
            assert records_of(path, JOBS, 10_000, plain=plain, chunk_bytes=chunk_bytes) == expected, seed
            assert records_of(path, JOBS, 10_000, plain=plain, chunk_bytes=1 << 40) == expected, seed
            sizes = [chunk.text_bytes() for chunk in read_chunks(path, JOBS, 10_000, plain, chunk_bytes)]
            assert all(size < chunk_bytes + 2 * 8192 for size in sizes[:-1]), (seed, sizes)


def test_a_record_longer_than_the_plain_readers_limit_makes_the_file_unreadable(tmp_path, monkeypatch):
    """A line longer than the limit (one line, no newline: a broken file) is refused once the
    limit is read, not held whole; a record just under it is read."""
    import hr_pipeline.ingest.reader as reader

    monkeypatch.setattr(reader, "PLAIN_READER_FIELD_LIMIT", 5_000)
    under = "1,a\n2," + "x" * 4_000 + "\n3,c\n"
    assert fields(write(tmp_path, under, "under.csv")) == [["1", "a"], ["2", "x" * 4_000], ["3", "c"]]
    assert records_of(write(tmp_path, under, "under.csv"), JOBS, 10, plain=True)[1] == (2, ["2", "x" * 4_000])
    for over in ("1,a\n2," + "x" * 6_000 + "\n3,c\n", "y" * 20_000, '1,"' + "z\n" * 4_000 + '"\n'):
        path = write(tmp_path, over, "over.csv")
        with pytest.raises(UnreadableFileError):
            list(read_chunks(path, JOBS, 10, plain=True))
