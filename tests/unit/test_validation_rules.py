"""Each rule of the contract (docs/CONTRACT.md), checked through the Great Expectations suite built from the contract."""

import pytest

from hr_pipeline.contract.tables import CONTRACTS
from hr_pipeline.ingest.expectations import ChunkValidator, build_rules
from hr_pipeline.ingest.reader import RawRow

HIRES = CONTRACTS["hired_employees"]
KEYS = {"departments": {1, 2}, "jobs": {10, 11}}


def rows(*records):
    return [RawRow(i, list(r)) for i, r in enumerate(records, start=1)]


def validate(*records, duplicates=None, contract=HIRES, keys=KEYS):
    return ChunkValidator(contract, keys, duplicates).validate(rows(*records))


def reasons_of(result):
    return {r.record_number: r.reasons for r in result.rejected}


GOOD = ("1", "Ann", "2021-01-01T00:00:00Z", "1", "10")


def test_suite_is_derived_from_the_contract():
    rules = build_rules(HIRES)
    assert {(r.name, r.column) for r in rules} >= {
        ("required", "id"),
        ("required", "job_id"),
        ("integer", "department_id"),
        ("instant format", "datetime"),
        ("real instant", "datetime"),
        ("foreign key", "department_id"),
        ("foreign key", "job_id"),
        ("unique key", "id"),
    }
    suite = ChunkValidator(HIRES, KEYS).suite
    assert len(suite.expectations) == len(rules)


def test_a_good_row_is_normalised():
    result = validate(GOOD, ("+2", " Bob ", "2021-06-30T23:59:59.5Z", "02", "11"))
    assert result.rejected == []
    assert result.valid_rows == [
        ("1", "Ann", "2021-01-01T00:00:00.000000Z", "1", "10"),
        ("2", "Bob", "2021-06-30T23:59:59.500000Z", "2", "11"),
    ]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (("", "Ann", "2021-01-01T00:00:00Z", "1", "10"), "id: required field is empty"),
        (("1", "", "2021-01-01T00:00:00Z", "1", "10"), "name: required field is empty"),
        (("a1", "Ann", "2021-01-01T00:00:00Z", "1", "10"), "id: 'a1' is not an integer"),
        (("1.5", "Ann", "2021-01-01T00:00:00Z", "1", "10"), "id: '1.5' is not an integer"),
        (("\u0663", "Ann", "2021-01-01T00:00:00Z", "1", "10"), "id: '\u0663' is not an integer"),  # Arabic 3
        (("1", "Ann", "2021-01-01T00:00:00Z", "1", "1e1"), "job_id: '1e1' is not an integer"),
        (("1", "Ann", "2021-01-01T00:00:00Z", "0x1", "10"), "department_id: '0x1' is not an integer"),
        (("1", "Ann", "2021-01-01 00:00:00Z", "1", "10"), "is not an ISO 8601 UTC instant"),
        (("99999999999", "Ann", "2021-01-01T00:00:00Z", "1", "10"), "outside the 32-bit integer range"),
        (("1", "Ann", "2021-02-30T00:00:00Z", "1", "10"), "'2021-02-30T00:00:00Z' is not a real date"),
        (("1", "Ann", "2021-01-01T25:00:00Z", "1", "10"), "is not a real date"),
        (("1", "Ann", "2021-01-01", "1", "10"), "is not an ISO 8601 UTC instant"),
        (("1", "Ann", "2021-01-01T00:00:00+02:00", "1", "10"), "is not an ISO 8601 UTC instant"),
        (("1", "Ann", "soon", "1", "10"), "is not an ISO 8601 UTC instant"),
        (("1", "Ann", "2021-01-01T00:00:00Z", "3", "10"), "department_id: 3 does not exist in departments"),
        (("1", "Ann", "2021-01-01T00:00:00Z", "1", "12"), "job_id: 12 does not exist in jobs"),
        (("1", "A" * 256, "2021-01-01T00:00:00Z", "1", "10"), "name: longer than 255 characters"),
        (("1", "Ann", "2021-01-01T00:00:00Z", "1"), "has 4 fields, expected 5"),
        (("1", "Ann", "2021-01-01T00:00:00Z", "1", "10", "x"), "has 6 fields, expected 5"),
    ],
)
def test_each_rule_rejects_with_its_reason(record, expected):
    result = validate(GOOD, record)
    assert result.valid_rows == [
        tuple(v if i != 2 else "2021-01-01T00:00:00.000000Z" for i, v in enumerate(GOOD))
    ]
    assert len(result.rejected) == 1
    assert any(expected in reason for reason in result.rejected[0].reasons), result.rejected[0].reasons


def test_every_broken_rule_is_listed():
    result = validate(("x", "", "2021-13-01T00:00:00Z", "", "7"))
    reasons = " | ".join(reasons_of(result)[1])
    for expected in (
        "id: 'x' is not an integer",
        "name: required",
        "is not a real date",
        "department_id: required",
        "job_id: 7 does not exist",
    ):
        assert expected in reasons


def test_duplicate_ids_reject_every_row_with_them():
    result = validate(
        GOOD,
        ("1", "Bob", "2021-01-01T00:00:00Z", "1", "10"),
        ("2", "Cy", "2021-01-01T00:00:00Z", "1", "10"),
        duplicates={1: 2},
    )
    assert [row[0] for row in result.valid_rows] == ["2"]
    assert all("id: 1 appears 2 times" in r.reasons[0] for r in result.rejected)


def test_reason_names_the_record_number():
    result = ChunkValidator(HIRES, KEYS).validate([RawRow(9, ["1", "", "2021-01-01T00:00:00Z", "1", "10"])])
    assert result.rejected[0].reason == "row 9: name: required field is empty"


def test_header_of_another_table_says_so():
    result = validate(("id", "job"))
    assert "header row of table jobs" in result.rejected[0].reasons[0]


def test_foreign_keys_with_an_empty_reference_table_reject_all():
    result = validate(GOOD, keys={"departments": set(), "jobs": set()})
    assert result.valid_rows == []
    assert "does not exist in departments" in " ".join(result.rejected[0].reasons)


def test_instants_are_checked_against_the_calendar_at_c_speed():
    import pyarrow as pa

    from hr_pipeline.contract.field_values import canonical_instants, parse_instants

    cases = {
        "2020-02-29T12:00:00Z": "2020-02-29T12:00:00.000000Z",  # leap year
        "2000-02-29T00:00:00Z": "2000-02-29T00:00:00.000000Z",  # divisible by 400
        "2021-03-31T23:59:59.123456789Z": "2021-03-31T23:59:59.123456Z",  # truncated to us
        "2021-01-01T00:00:00.5Z": "2021-01-01T00:00:00.500000Z",
        "0001-01-01T00:00:00Z": "0001-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999Z": "9999-12-31T23:59:59.999999Z",
        "2021-02-29T12:00:00Z": False,
        "1900-02-29T00:00:00Z": False,
        "2021-04-31T00:00:00Z": False,
        "2021-02-30T00:00:00Z": False,
        "2021-13-01T00:00:00Z": False,
        "2021-00-10T00:00:00Z": False,
        "2021-01-00T00:00:00Z": False,
        "2021-01-01T24:00:00Z": False,
        "2021-01-01T23:60:00Z": False,
        "2021-01-01T23:59:60Z": False,
        "0000-01-01T00:00:00Z": False,
        "yesterday": None,
        "2021-01-01 00:00:00": None,
        None: None,
    }
    is_real, instants = parse_instants(pa.array(list(cases), pa.string()))
    assert is_real.to_pylist() == [v if v in (None, False) else True for v in cases.values()]
    text = canonical_instants(instants).to_pylist()
    assert text == [v if isinstance(v, str) else None for v in cases.values()]


@pytest.mark.parametrize(
    "cases",
    [
        # every instant real: Arrow's one cast decides (year 0000 aside, which it accepts)
        {
            "2020-02-29T12:00:00Z": "2020-02-29T12:00:00.000000Z",
            "2021-03-31T23:59:59.123456789Z": "2021-03-31T23:59:59.123456Z",
            "0000-01-01T00:00:00Z": False,
            "soon": None,
            None: None,
        },
        # one impossible instant among them: the field-by-field check finds it, the rest stand
        {"2021-03-31T23:59:59.5Z": "2021-03-31T23:59:59.500000Z", "2021-02-30T00:00:00Z": False},
        {"yesterday": None},
    ],
)
def test_instants_with_and_without_an_impossible_one(cases):
    import pyarrow as pa

    from hr_pipeline.contract.field_values import canonical_instants, parse_instants

    is_real, instants = parse_instants(pa.array(list(cases), pa.string()))
    assert is_real.to_pylist() == [v if v in (None, False) else True for v in cases.values()]
    assert canonical_instants(instants).to_pylist() == [
        v if isinstance(v, str) else None for v in cases.values()
    ]


@pytest.mark.parametrize(
    ("values", "possible"),
    [
        (["1", "Ann", "2021-01-01T00:00:00Z"], False),
        ([" 1"], True),
        (["1 "], True),
        (["1\t"], True),
        (["\u00a01"], True),
        (["1\u3000"], True),
        (["1\u0085"], True),
        (["Jos\u00e9"], True),  # a non-ASCII last letter: the exact check decides
        (["", None], False),
        ([], False),
    ],
)
def test_edge_whitespace_prefilter_never_misses(values, possible):
    import pyarrow as pa

    from hr_pipeline.contract.field_values import edge_whitespace_possible

    column = pa.array(values, pa.string())
    assert edge_whitespace_possible(column) is possible
    # on a slice too (Arrow's offset into shared buffers)
    padded = pa.array(["x"] + values + [" y "], pa.string()).slice(1, len(values))
    assert edge_whitespace_possible(padded) is possible


def test_foreign_keys_against_a_large_referenced_table():
    keys = {"departments": range(1, 200_001, 2), "jobs": {10}}  # 100,000 odd department ids
    result = validate(
        ("1", "Ann", "2021-01-01T00:00:00Z", "199999", "10"),
        ("2", "Bob", "2021-01-01T00:00:00Z", "200000", "10"),
        ("3", "Cy", "2021-01-01T00:00:00Z", "x7", "10"),
        ("4", "Di", "2021-01-01T00:00:00Z", "9999999999", "10"),
        keys=keys,
    )
    assert [row[0] for row in result.valid_rows] == ["1"]
    assert reasons_of(result) == {
        2: ["department_id: 200000 does not exist in departments"],
        3: ["department_id: 'x7' is not an integer"],  # not also "does not exist"
        # an id that cannot exist is not looked up: one reason per problem
        4: ["department_id: 9999999999 is outside the 32-bit integer range"],
    }


def test_unicode_whitespace_around_a_field_is_trimmed():
    result = validate(("\u00a01", "Ann\u2003", "\t2021-01-01T00:00:00Z\u3000", "1\u0085", " 10"))
    assert result.rejected == []
    assert result.valid_rows == [("1", "Ann", "2021-01-01T00:00:00.000000Z", "1", "10")]


MIXED = (
    GOOD,
    ("", "", "", "", ""),
    ("a1", "Bo", "2021-02-30T00:00:00Z", "3", "12"),
    ("99999999999", "x" * 300, "soon", "1.5", "10"),
    ("5", " Cy ", "2021-06-30T23:59:59.5Z", "02", "11"),
    ("6", "Di", "2021-01-01T24:00:00Z", "2", "x"),
    ("7", "Ed", "2021-01-01T00:00:00Z", "1", "10"),
)


def test_a_clean_chunk_takes_one_gx_run_and_a_dirty_one_lists_only_its_failed_rules(monkeypatch):
    """Pass/fail per rule first (BOOLEAN_ONLY); the failing rows are listed (COMPLETE) only for
    the rules that failed, so their reasons are the same as from one full run."""
    from great_expectations.datasource.fluent.interfaces import Batch

    runs = []
    real_validate = Batch.validate

    def spy(self, expect, *args, **kwargs):
        runs.append(
            (kwargs["result_format"]["result_format"], sorted(e.meta["rule"] for e in expect.expectations))
        )
        return real_validate(self, expect, *args, **kwargs)

    monkeypatch.setattr(Batch, "validate", spy)
    validator = ChunkValidator(HIRES, KEYS)
    all_rules = list(range(len(validator.rules)))
    assert validator.validate(rows(GOOD)).rejected == []
    assert runs == [("BOOLEAN_ONLY", all_rules)]

    runs.clear()
    result = validator.validate(rows(GOOD, ("2", "Bo", "2021-01-01T00:00:00Z", "3", "10")))
    assert reasons_of(result) == {2: ["department_id: 3 does not exist in departments"]}
    foreign_key = [
        i for i, r in enumerate(validator.rules) if (r.name, r.column) == ("foreign key", "department_id")
    ]
    assert runs == [("BOOLEAN_ONLY", all_rules), ("COMPLETE", foreign_key)]


@pytest.mark.parametrize(
    "texts",
    [
        ["2021-11-07T02:48:42Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"],  # the text is used
        ["2021-11-07T02:48:42Z", "2021-11-07T02:48:42.5Z"],  # formatted from the instants
    ],
)
def test_canonical_text_from_the_source_text_equals_the_formatted_one(texts):
    import pyarrow as pa

    from hr_pipeline.contract.field_values import canonical_instants, parse_instants

    text = pa.array(texts, pa.string())
    _, instants = parse_instants(text)
    assert canonical_instants(instants, text).to_pylist() == canonical_instants(instants).to_pylist()
    assert canonical_instants(instants, text).to_pylist()[0] == "2021-11-07T02:48:42.000000Z"


def test_whitespace_is_what_python_strips_whatever_else_the_chunk_holds():
    """One definition of the whitespace around a field (Python's str.strip()), applied the same
    whether or not other values of the chunk need trimming."""
    import pyarrow as pa

    from hr_pipeline.contract.field_values import WHITESPACE, normalized_text

    assert WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    for space in WHITESPACE:
        for others in ([], ["plain"], [" padded "]):
            values = [f"{space}7{space}", *others]
            assert normalized_text(pa.array(values)).to_pylist() == [v.strip() or None for v in values]
