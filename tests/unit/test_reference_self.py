"""The reference of the data contract (tests/reference), checked by hand on its own.

The differential tests hold the pipeline to ``tests.reference.contract``; these tests are what
makes the reference itself trustworthy: hand-worked examples of every rule and of the reading
semantics, the real extracts' known figures, a hand-computed metrics example, the parsing of the
pipeline's reason texts, and the generator's determinism and coverage. The table definitions are
compared with ``hr_pipeline.contract.tables`` here and nowhere else.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.reference import contract as ref
from tests.reference.contract import (
    FIELDS,
    FOREIGN_KEY,
    INSTANT_FORMAT,
    INTEGER_RULE,
    LENGTH,
    RANGE,
    REAL_INSTANT,
    REQUIRED,
    UNIQUE,
    parse_reason_text,
    reference_file,
    reference_metrics,
    reference_pipeline,
)
from tests.reference.extracts import Mess, generated_tables, messy_extract, random_mess

CHALLENGE = Path(__file__).resolve().parents[2] / "include" / "sample_data"  # the real extracts
HIRES_KEYS = {"departments": {1, 2, 3}, "jobs": {1, 2}}


def outcome(table: str, text: str | bytes, keys=None):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return reference_file(table, data, keys if keys is not None else HIRES_KEYS)


def rules(table: str, text: str | bytes, keys=None) -> dict[int, set]:
    return outcome(table, text, keys).rejected


# -- the definitions, against hr_pipeline's ------------------------------------------------------


def test_table_definitions_equal_the_pipelines_contracts():
    """The reference's second copy of the contract is the pipeline's: same tables in the same
    load order, same columns in CSV order, same types, references, key and limits."""
    from hr_pipeline.contract import tables as contracts

    assert ref.LOAD_ORDER == contracts.TABLE_NAMES
    assert set(ref.TABLES) == set(contracts.CONTRACTS)
    for name, columns in ref.TABLES.items():
        contract = contracts.CONTRACTS[name]
        assert contract.key == ref.KEY
        assert [(c.name, c.type, c.references) for c in columns] == [
            (c.name, c.type.value, c.references) for c in contract.columns
        ]
    assert (ref.INT_MIN, ref.INT_MAX) == (contracts.INTEGER_MIN, contracts.INTEGER_MAX)
    assert ref.MAX_LENGTH == contracts.STRING_MAX_LENGTH


def test_whitespace_is_what_str_strip_removes():
    """Every character str.isspace() accepts: the Unicode White_Space characters and
    U+001C-U+001F, written out in the reference."""
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(ref.WHITESPACE) == spaces
    assert ref.trim("\x1c 5 \x1f") == "5"
    assert ref.trim("\u200b5\ufeff") == "\u200b5\ufeff"  # zero-width: not whitespace
    assert ref.trim("\u3000\xa0\u2028\x85 5\u202f\t\r\n") == "5"


# -- reading -----------------------------------------------------------------------------------


def test_plain_rows_are_loaded_typed_in_record_order():
    result = outcome("departments", "2,Sales\n1,  Marketing \n")
    assert result.loaded == [(2, "Sales"), (1, "Marketing")]
    assert result.loaded_records == [1, 2]
    assert (result.data_rows, result.rejected_count, result.header_skipped) == (2, 0, False)


@pytest.mark.parametrize(
    "header", ["id,department", " ID , Department\u3000", '"id","DEPARTMENT"', "\xa0id\xa0,department"]
)
def test_a_header_row_is_skipped_but_keeps_record_number_1(header):
    result = outcome("departments", f"{header}\r\n5,x\r\n7,\n")
    assert result.header_skipped is True
    assert result.data_rows == 2
    assert result.loaded_records == [2]
    assert result.rejected == {3: {(REQUIRED, "department")}}


def test_what_is_not_a_header():
    # record 2, not record 1
    assert rules("departments", "1,a\nid,department\n") == {2: {(INTEGER_RULE, "id")}}
    # the key's name only; another table's header; a header with a field too many
    assert rules("departments", "id,Sales\n") == {1: {(INTEGER_RULE, "id")}}
    assert rules("departments", "id,job\n") == {1: {(INTEGER_RULE, "id")}}
    assert rules("departments", "id,department,x\n") == {1: {(FIELDS, None)}}
    # U+200B is not whitespace, so this is not the column name
    assert rules("departments", "\u200bid,department\n") == {1: {(INTEGER_RULE, "id")}}


def test_bom_crlf_quotes_and_blank_lines():
    data = b'\xef\xbb\xbf\r\n\r\nid,department\r\n\r\n1,"Doe, Jane ""JD"""\r\n\n2,"two\r\nlines\nthree"\n\n'
    result = outcome("departments", data)
    assert result.header_skipped is True
    assert result.data_rows == 2
    assert result.loaded == [(1, 'Doe, Jane "JD"'), (2, "two\r\nlines\nthree")]
    assert result.loaded_records == [2, 3]  # blank lines are not records


def test_a_second_bom_is_text():
    result = outcome("departments", b"\xef\xbb\xbf\xef\xbb\xbf1,a\n")
    assert result.rejected == {1: {(INTEGER_RULE, "id")}}


def test_no_final_newline_and_an_unterminated_quote():
    assert outcome("departments", "1,a\n2,b").loaded == [(1, "a"), (2, "b")]
    assert outcome("departments", '1,a\n2,"b\nc').loaded == [(1, "a"), (2, "b\nc")]


def test_quotes_that_do_not_open_a_quoted_field():
    result = outcome("departments", '1,a"b"c\n2, "x"\n3,"ab"cd\n')
    assert result.loaded == [(1, 'a"b"c'), (2, '"x"'), (3, "abcd")]


@pytest.mark.parametrize(
    "data",
    [b"1,a\x00\n", b"1,\xff\n", b"1,Zo\xeb\n", b"1,a\xe2\x82", b"1,\xed\xa0\x80\n", b"1,\xc0\xaf\n", b"\x00"],
)
def test_nul_or_invalid_utf8_makes_the_file_unreadable(data):
    result = outcome("departments", data)
    assert result.unreadable is True
    assert result.data_rows == 0
    assert not result.loaded


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\r\n\n", b"id,department\n"])
def test_files_without_data_rows(data):
    result = outcome("departments", data)
    assert not result.unreadable
    assert result.data_rows == 0
    assert not result.rejected


# -- the rules, one by one ---------------------------------------------------------------------


def test_fields_rule_is_the_only_rule_of_a_misshapen_row():
    assert rules("departments", '1\n1,a,b\n""\n \n,,\nx,\n') == {
        1: {(FIELDS, None)},
        2: {(FIELDS, None)},
        3: {(FIELDS, None)},
        4: {(FIELDS, None)},
        5: {(FIELDS, None)},
        6: {(REQUIRED, "department"), (INTEGER_RULE, "id")},
    }


def test_required_is_after_stripping_and_alone_on_its_field():
    assert rules("departments", '1, \u3000\n \t,a\n"\r\n",x\n') == {
        1: {(REQUIRED, "department")},
        2: {(REQUIRED, "id")},
        3: {(REQUIRED, "id")},
    }


@pytest.mark.parametrize(
    "text", ["x5", "1.0", "1e3", "١", "１", "5 5", "+-1", "0x1", "\u200b5", "5\u200b", "+", "-"]
)
def test_integer_rule(text):
    assert rules("departments", f'"{text}",a\n') == {1: {(INTEGER_RULE, "id")}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2147483647", 2147483647),
        ("-2147483648", -2147483648),
        ("+7", 7),
        ("007", 7),
        ("-0", 0),
        ("\xa09\u3000", 9),
    ],
)
def test_integers_in_range_load(text, value):
    assert outcome("departments", f'"{text}",a\n').loaded == [(value, "a")]


@pytest.mark.parametrize(
    "text", ["2147483648", "-2147483649", "99999999999999999999", "1" * 5000, "-0000000002147483649"]
)
def test_range_rule(text):
    assert rules("departments", f"{text},a\n") == {1: {(RANGE, "id")}}


def test_length_rule_counts_code_points_after_stripping():
    assert outcome("jobs", "1," + "🙂" * 255 + "\n").loaded == [(1, "🙂" * 255)]
    assert outcome("jobs", "1, " + "é" * 255 + " \n").loaded == [(1, "é" * 255)]
    assert rules("jobs", "1," + "é" * 256 + "\n") == {1: {(LENGTH, "job")}}


def hire(when: str, dept="1", job="1", key="1", name="Ann") -> str:
    return f"{key},{name},{when},{dept},{job}\n"


@pytest.mark.parametrize(
    "when",
    [
        "2021-11-07 02:48:42Z",
        "2021-11-07T02:48:42",
        "2021-11-07T02:48:42+00:00",
        "2021-11-07T02:48:42.Z",
        "2021-11-07T02:48:42.1234567890Z",
        "2021-11-07t02:48:42z",
        "yesterday",
        "２０２１-11-07T02:48:42Z",
    ],
)
def test_instant_format_rule(when):
    assert rules("hired_employees", hire(when)) == {1: {(INSTANT_FORMAT, "datetime")}}


@pytest.mark.parametrize(
    "when",
    [
        "2021-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2021-04-31T00:00:00Z",
        "2021-13-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2021-01-01T24:00:00Z",
        "2021-01-01T00:60:00Z",
        "2021-01-01T00:00:60Z",
        "2021-01-00T00:00:00Z",
    ],
)
def test_real_instant_rule(when):
    assert rules("hired_employees", hire(when)) == {1: {(REAL_INSTANT, "datetime")}}


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2021-11-07T02:48:42Z", datetime(2021, 11, 7, 2, 48, 42)),
        ("2000-02-29T00:00:00Z", datetime(2000, 2, 29)),
        ("2021-12-31T23:59:59.999999999Z", datetime(2021, 12, 31, 23, 59, 59, 999999)),  # truncated
        ("2021-03-31T23:59:59.9Z", datetime(2021, 3, 31, 23, 59, 59, 900000)),
        ("2021-11-07T02:48:42.0000009Z", datetime(2021, 11, 7, 2, 48, 42, 0)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1)),
        ("9999-12-31T23:59:59.999999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_instants_load_truncated_to_microseconds(when, expected):
    assert outcome("hired_employees", hire(when)).loaded == [(1, "Ann", expected, 1, 1)]


def test_foreign_key_rule_only_on_valid_in_range_integers():
    assert rules("hired_employees", hire("2021-01-01T00:00:00Z", dept="9")) == {
        1: {(FOREIGN_KEY, "department_id")}
    }
    assert rules("hired_employees", hire("2021-01-01T00:00:00Z", job="+3")) == {1: {(FOREIGN_KEY, "job_id")}}
    assert rules("hired_employees", hire("2021-01-01T00:00:00Z", dept="99999999999")) == {
        1: {(RANGE, "department_id")}
    }
    assert rules("hired_employees", hire("2021-01-01T00:00:00Z", job="x")) == {1: {(INTEGER_RULE, "job_id")}}
    assert rules("hired_employees", hire("2021-01-01T00:00:00Z", job="")) == {1: {(REQUIRED, "job_id")}}
    # the referenced table as it stands: empty, nothing exists
    assert rules("hired_employees", hire("2021-01-01T00:00:00Z"), keys={}) == {
        1: {(FOREIGN_KEY, "department_id"), (FOREIGN_KEY, "job_id")}
    }
    assert outcome("hired_employees", hire("2021-01-01T00:00:00Z", dept="003")).loaded[0][3] == 3


def test_unique_rule_is_by_value_over_well_formed_rows():
    data = "1,a\n+1,b\n 01 ,c\n0000000000000000001,d\n2,e\n"
    assert rules("departments", data) == {n: {(UNIQUE, "id")} for n in (1, 2, 3, 4)}
    # a misshapen row's id does not count; a row failing another rule does, and gets both
    assert rules("departments", "1,a\n1\n") == {2: {(FIELDS, None)}}
    assert rules("departments", "1,a\n1,\n") == {
        1: {(UNIQUE, "id")},
        2: {(UNIQUE, "id"), (REQUIRED, "department")},
    }
    # ids that are not valid in-range integers are not counted
    assert rules("departments", "x,a\nx,b\n2147483648,c\n2147483648,d\n") == {
        1: {(INTEGER_RULE, "id")},
        2: {(INTEGER_RULE, "id")},
        3: {(RANGE, "id")},
        4: {(RANGE, "id")},
    }
    assert rules("departments", "0,a\n-0,b\n+0,c\n") == {n: {(UNIQUE, "id")} for n in (1, 2, 3)}


def test_every_broken_rule_is_listed():
    data = ",a,bad,x,99\n1," + "n" * 300 + ",2021-02-30T00:00:00Z,99999999999,7\n"
    assert rules("hired_employees", data) == {
        1: {
            (REQUIRED, "id"),
            (INSTANT_FORMAT, "datetime"),
            (INTEGER_RULE, "department_id"),
            (FOREIGN_KEY, "job_id"),
        },
        2: {(LENGTH, "name"), (REAL_INSTANT, "datetime"), (RANGE, "department_id"), (FOREIGN_KEY, "job_id")},
    }


def test_rejected_rows_keep_their_raw_fields():
    result = outcome("departments", ' 1 ,\n=2, "x" \n')
    assert result.fields == {1: [" 1 ", ""], 2: ["=2", ' "x" ']}


def test_stored_values_are_stripped_and_nothing_else():
    result = outcome("departments", '"\u2028 7 ","\xa0Zoë\u200b \u3000"\n')
    assert result.loaded == [(7, "Zoë\u200b")]


# -- the pipeline: upserts, order, references --------------------------------------------------


def test_pipeline_order_upserts_and_references():
    files = {
        "hired_employees": [("a.csv", hire("2021-01-01T00:00:00Z", dept="2", job="1").encode())],
        "departments": [("b.csv", b"1,Second\n3,Only in b\n"), ("a.csv", b"1,First\n2,Two\n")],
        "jobs": [("x.csv", b"1,J\n")],
    }
    result = reference_pipeline(files)
    assert result.tables["departments"] == {1: (1, "Second"), 2: (2, "Two"), 3: (3, "Only in b")}
    assert [name for name, _ in result.files["departments"]] == ["a.csv", "b.csv"]
    assert result.tables["hired_employees"] == {1: (1, "Ann", datetime(2021, 1, 1), 2, 1)}
    again = reference_pipeline({"departments": [("c.csv", b"2,Renamed\n")]}, result.tables)
    assert again.tables["departments"][2] == (2, "Renamed")
    assert again.tables["hired_employees"] == result.tables["hired_employees"]


# -- the real extracts -------------------------------------------------------------------------


def test_the_real_extracts_give_the_known_figures():
    files = {t: [(f"{t}.csv", (CHALLENGE / f"{t}.csv").read_bytes())] for t in ref.LOAD_ORDER}
    result = reference_pipeline(files)
    ((_, departments),) = result.files["departments"]
    ((_, jobs),) = result.files["jobs"]
    ((_, hires),) = result.files["hired_employees"]
    assert (departments.data_rows, len(departments.loaded)) == (12, 12)
    assert (jobs.data_rows, len(jobs.loaded)) == (183, 183)
    assert (hires.data_rows, hires.rejected_count, len(hires.loaded)) == (1999, 70, 1929)
    assert {rule for found in hires.rejected.values() for rule, _ in found} == {REQUIRED}
    assert len(result.tables["hired_employees"]) == 1929
    metrics = reference_metrics(result.tables)
    assert sum(sum(row[3:]) for row in metrics["hires_by_quarter"] if row[0] == 2021) == 1643
    assert len(metrics["departments_above_mean_2021"]) == 7
    assert metrics["departments_above_mean_2021"][0][1:] == ("Support", 216)


# -- the metrics, by hand ----------------------------------------------------------------------


def test_metrics_on_a_hand_worked_example():
    d = datetime
    tables = {
        "departments": {1: (1, "A"), 2: (2, "B"), 3: (3, "C")},
        "jobs": {1: (1, "J")},
        "hired_employees": {
            1: (1, "h", d(2021, 1, 1), 1, 1),
            2: (2, "h", d(2021, 3, 31, 23, 59, 59, 999999), 1, 1),
            3: (3, "h", d(2021, 12, 31), 1, 1),
            4: (4, "h", d(2021, 4, 1), 2, 1),
            5: (5, "h", d(2021, 5, 1), 3, 99),  # unknown job: counted for its department only
            6: (6, "h", d(2020, 6, 1), 2, 1),
            7: (7, "h", d(2021, 7, 1), 9, 1),  # unknown department: counted nowhere
        },
    }
    metrics = reference_metrics(tables)
    assert metrics["hires_by_quarter"] == [
        (2020, "B", "J", 0, 1, 0, 0),
        (2021, "A", "J", 2, 0, 0, 1),
        (2021, "B", "J", 0, 1, 0, 0),
    ]
    assert metrics["quarterly_hires_2021"] == [("A", "J", 2, 0, 0, 1), ("B", "J", 0, 1, 0, 0)]
    # 2021: A 3, B 1, C 1, mean 5/3; 2020: B 1, mean 1, nobody strictly above
    assert metrics["departments_above_mean"] == [(2021, 1, "A", 3, 5 / 3)]
    assert metrics["departments_above_mean_2021"] == [(1, "A", 3)]


def test_metrics_group_quarters_by_name_and_departments_by_id():
    d = datetime
    tables = {
        "departments": {1: (1, "Same"), 2: (2, "Same"), 3: (3, "Other")},
        "jobs": {1: (1, "J"), 2: (2, "J")},
        "hired_employees": {i: (i, "h", d(2021, 2, 1), 1 + (i % 2), 1 + (i % 2)) for i in range(4)}
        | {9: (9, "h", d(2021, 8, 1), 3, 1)},
    }
    metrics = reference_metrics(tables)
    assert metrics["quarterly_hires_2021"] == [("Other", "J", 0, 0, 1, 0), ("Same", "J", 4, 0, 0, 0)]
    # by id: 2, 2, 1 -> mean 5/3: both "Same" departments listed, tied on hired and name
    assert sorted(metrics["departments_above_mean_2021"]) == [(1, "Same", 2), (2, "Same", 2)]


# -- the pipeline's reason texts ---------------------------------------------------------------


def test_reason_texts_map_to_rules_and_columns():
    table = "hired_employees"
    assert parse_reason_text(
        "row 3: has 4 fields, expected 5 (id, name, datetime, department_id, job_id)", table
    ) == (3, {(FIELDS, None)})
    assert parse_reason_text(
        "row 2: has 2 fields, expected 5 (id, name, datetime, department_id, job_id); "
        "this looks like the header row of table jobs: wrong folder?",
        table,
    ) == (2, {(FIELDS, None)})
    text = (
        "row 12: id: 7 appears 2 times in this file, so every row with it is rejected; "
        "name: required field is empty; "
        "datetime: '2021-02-30T00:00:00Z' is not a real date and time; "
        "department_id: 99999999999 is outside the 32-bit integer range; "
        "job_id: 99 does not exist in jobs"
    )
    assert parse_reason_text(text, table) == (
        12,
        {
            (UNIQUE, "id"),
            (REQUIRED, "name"),
            (REAL_INSTANT, "datetime"),
            (RANGE, "department_id"),
            (FOREIGN_KEY, "job_id"),
        },
    )
    # a raw value holding "; " and what looks like another reason
    tricky = (
        "row 7: department_id: 'x; job_id: 5 does not exist in jobs' is not an integer; "
        'datetime: "it\'s; name: required field is empty" is not an ISO 8601 UTC instant like '
        "2021-11-07T02:48:42Z; job_id: 5 does not exist in jobs"
    )
    assert parse_reason_text(tricky, table) == (
        7,
        {(INTEGER_RULE, "department_id"), (INSTANT_FORMAT, "datetime"), (FOREIGN_KEY, "job_id")},
    )
    assert parse_reason_text("row 1: name: longer than 255 characters", table) == (1, {(LENGTH, "name")})
    with pytest.raises(ref.UnparsedReason):
        parse_reason_text("row 1: name: is odd", table)
    with pytest.raises(ref.UnparsedReason):
        parse_reason_text("name: required field is empty", table)


def test_formula_neutralisation():
    assert [ref.neutralised(v) for v in ["=1", "+1", "-1", "@a", "\ta", "\ra", "'a", "a=", " =1", ""]] == [
        "'=1",
        "'+1",
        "'-1",
        "'@a",
        "'\ta",
        "'\ra",
        "''a",
        "a=",
        " =1",
        "",
    ]


# -- the generator -----------------------------------------------------------------------------


def test_the_generator_is_deterministic():
    first = generated_tables(11, 20, 30, 200)
    assert first == generated_tables(11, 20, 30, 200)
    assert first != generated_tables(12, 20, 30, 200)
    mess = random_mess(random.Random(3))
    assert messy_extract("jobs", 50, 5, mess=mess) == messy_extract("jobs", 50, 5, mess=mess)


def test_the_generator_covers_every_rule_and_the_reading_cases():
    """Over a few seeds, the generated files break every rule and contain every reading case
    the generator promises (so a differential test on them exercises all of it)."""
    seen_rules: Counter = Counter()
    features: Counter = Counter()
    for seed in range(40):
        rng = random.Random(seed)
        files = generated_tables(seed, rng.randint(1, 30), rng.randint(1, 60), rng.randint(1, 400))
        result = reference_pipeline(files)
        for _table, outcomes in result.files.items():
            for _, found in outcomes:
                seen_rules.update(rule for rules_ in found.rejected.values() for rule, _ in rules_)
                features["header"] += found.header_skipped
                features["loaded"] += len(found.loaded)
        for _table, [(_, data)] in files.items():
            features["bom"] += data.startswith(b"\xef\xbb\xbf")
            features["crlf"] += b"\r\n" in data
            features["no final newline"] += not data.endswith(b"\n")
            features["blank line"] += b"\n\n" in data or b"\r\n\r\n" in data
            features["quoted newline"] += b'\n"' in data or b'\r\n"' in data
            features["doubled quote"] += b'""' in data
            features["non-ascii whitespace"] += "\u3000".encode() in data or b"\xc2\xa0" in data
            features["emoji"] += "🙂".encode() in data
            features["formula start"] += b",=" in data or b",@" in data
            features["padded zero id"] += b"0000000000000000" in data
    assert set(seen_rules) == set(ref.RULES), seen_rules
    assert all(
        features[name] > 0
        for name in [
            "header",
            "loaded",
            "bom",
            "crlf",
            "no final newline",
            "blank line",
            "quoted newline",
            "doubled quote",
            "non-ascii whitespace",
            "emoji",
            "formula start",
            "padded zero id",
        ]
    ), features


def test_unreadable_and_odd_quoting_options():
    for how in ("nul", "latin1", "truncated", "surrogate", "overlong"):
        data = messy_extract("jobs", 20, 1, mess=Mess(unreadable=how))
        assert reference_file("jobs", data, {}).unreadable, how
    odd = [messy_extract("jobs", 200, seed, mess=Mess(odd_quoting=True, quote_rate=0.3)) for seed in range(5)]
    assert any(b'"tail' in data for data in odd)
    assert any(b'"unterminated' in data for data in odd)
    assert not any(reference_file("jobs", data, {}).unreadable for data in odd)


def test_distinct_names_option():
    data = messy_extract(
        "departments",
        300,
        4,
        mess=Mess(distinct_names=True, bad_rate=0, misshapen_rate=0, duplicate_rate=0, long_field_rate=0),
    )
    names = [row[1] for row in reference_file("departments", data, {}).loaded]
    assert len(names) > 250
    assert len(set(names)) == len(names)
