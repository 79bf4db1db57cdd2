"""Reading the extracts: encodings, line ends, quoting, headers, unreadable files."""

import pytest

from hr_pipeline.contracts import CONTRACTS
from hr_pipeline.csv_reader import UnreadableFileError, parse_int, read_chunks, read_rows, scan

JOBS = CONTRACTS["jobs"]
HIRES = CONTRACTS["hired_employees"]


def write(tmp_path, data: bytes | str, name="f.csv"):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def fields(path, contract=JOBS):
    return [row.fields for row in read_rows(path, contract)]


def test_plain_lf(tmp_path):
    assert fields(write(tmp_path, "1,Nurse\n2,Teacher\n")) == [["1", "Nurse"], ["2", "Teacher"]]


def test_crlf_and_bom_and_header(tmp_path):
    path = write(tmp_path, "\ufeffid,job\r\n1,Nurse\r\n2,Teacher\r\n")
    assert fields(path) == [["1", "Nurse"], ["2", "Teacher"]]
    assert scan(path, JOBS).header_skipped


def test_header_is_only_skipped_on_the_first_row(tmp_path):
    path = write(tmp_path, "1,Nurse\nid,job\n")
    assert fields(path) == [["1", "Nurse"], ["id", "job"]]


def test_quoted_fields_with_commas_quotes_and_newlines(tmp_path):
    path = write(tmp_path, '1,"Doe, Jane ""JD"""\n2,"Two\nlines"\n3,x\n')
    rows = list(read_rows(path, JOBS))
    assert [r.fields for r in rows] == [["1", 'Doe, Jane "JD"'], ["2", "Two\nlines"], ["3", "x"]]
    assert [r.row_number for r in rows] == [1, 2, 3]  # records, not physical lines


def test_non_ascii(tmp_path):
    assert fields(write(tmp_path, "1,Zoë Ångström 李\n")) == [["1", "Zoë Ångström 李"]]


def test_empty_file_and_header_only_file_have_no_rows(tmp_path):
    assert fields(write(tmp_path, "", "empty.csv")) == []
    assert scan(write(tmp_path, "", "empty.csv"), JOBS).data_rows == 0
    header_only = write(tmp_path, "id,job\r\n", "header.csv")
    assert fields(header_only) == []
    assert scan(header_only, JOBS).data_rows == 0


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
    assert result.data_rows == 7
    assert result.duplicate_ids == {1: 2, 2: 3}


def test_chunks_cover_every_row_once(tmp_path):
    path = write(tmp_path, "".join(f"{i},job {i}\n" for i in range(1, 26)))
    chunks = list(read_chunks(path, JOBS, 10))
    assert sum(len(c) for c in chunks) == 25
    assert [int(n) for c in chunks for n in c.row_numbers] == list(range(1, 26))


def test_misshapen_rows_keep_their_position_and_text(tmp_path):
    path = write(tmp_path, 'id,job\n1,a\n2\n\n3,"x, y",z\n4,b\n')
    rows = list(read_rows(path, JOBS))
    assert [(r.row_number, r.fields) for r in rows] == [
        (2, ["1", "a"]), (3, ["2"]), (4, ["3", "x, y", "z"]), (5, ["4", "b"])]


@pytest.mark.parametrize("text,value", [("12", 12), ("-3", -3), ("+4", 4), (" 5 ", 5),
                                        ("1.0", None), ("x", None), ("", None), ("١٢", None)])
def test_parse_int(text, value):
    assert parse_int(text) == value


def test_scan_leaves_ids_outside_the_integer_range_to_the_range_rule(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("2147483648,a\n2147483648,b\n-2147483648,c\n-2147483648,d\n2147483647,e\n")
    result = scan(path, JOBS)
    assert result.data_rows == 5
    assert result.duplicate_ids == {-2147483648: 2}
