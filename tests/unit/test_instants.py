"""The instants' text forms: what operators and metadata give, what SQLite stores, backup names."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from hr_pipeline.contract import instants

UTC = timezone.utc


def test_parse_instant_gives_aware_utc():
    expected = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert instants.parse_instant("2026-01-02T03:04:05Z") == expected
    assert instants.parse_instant(" 2026-01-02T05:04:05+02:00 ") == expected
    assert instants.parse_instant("2026-01-02 03:04:05") == expected  # naive: UTC
    assert instants.parse_instant("2026-01-02T03:04:05.123456Z") == expected.replace(microsecond=123456)
    assert instants.parse_instant("2026-01-02T03:04:05Z").tzinfo is UTC
    with pytest.raises(ValueError, match="^Invalid isoformat string: 'yesterday'$"):
        instants.parse_instant("yesterday")


def test_as_utc_takes_a_naive_datetime_as_utc():
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert instants.as_utc(naive) == naive.replace(tzinfo=UTC)
    later = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert instants.as_utc(later) == naive.replace(tzinfo=UTC)
    assert instants.as_utc(later).tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 6), "2026-01-02T03:04:05.000006Z"),
        (
            datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05.000006Z",
        ),
        (datetime(1, 1, 1), "0001-01-01T00:00:00.000000Z"),
        (datetime(999, 12, 31, 23, 59, 59, 999999), "0999-12-31T23:59:59.999999Z"),
    ],
)
def test_format_instant_is_fixed_width_utc_and_reads_back(value, text):
    assert instants.format_instant(value) == text
    assert instants.parse_instant(text) == instants.as_utc(value)
    assert instants.parse_stored_timestamp(text) == instants.as_utc(value).replace(tzinfo=None)
    assert re.fullmatch(instants.INSTANT_PATTERN, text)


def test_stored_timestamps_read_back_naive_utc():
    assert instants.parse_stored_timestamp("1-01-01T00:00:00.000000Z") == datetime(1, 1, 1)  # older rows
    aware = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert instants.parse_stored_timestamp(aware) == datetime(2026, 1, 2, 3, 4, 5)
    assert instants.parse_stored_timestamp(datetime(2026, 1, 2)) == datetime(2026, 1, 2)


def test_name_stamps_have_microseconds_and_old_ones_still_parse():
    instant = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    stamp = instants.format_name_stamp(instant)
    assert stamp == "20260102T030405.678901Z"
    assert instants.format_name_stamp(instant.replace(tzinfo=None)) == stamp
    assert instants.format_name_stamp(instant.replace(microsecond=0)) == "20260102T030405.000000Z"
    assert instants.parse_name_stamp(stamp) == instant
    assert instants.parse_name_stamp("20260102T030405Z") == instant.replace(microsecond=0)
    for text in (stamp, "20260102T030405Z"):
        assert re.fullmatch(instants.NAME_STAMP_PATTERN, text)
    for text in ("20260102T030405", "20260102T030405.6789Z", "20260102T030405678901Z"):
        assert not re.fullmatch(instants.NAME_STAMP_PATTERN, text)


def test_stamps_of_one_second_sort_as_their_instants():
    base = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    moments = [base + timedelta(microseconds=m) for m in (0, 1, 999_999, 1_000_000)]
    stamps = [instants.format_name_stamp(m) for m in moments]
    assert sorted(stamps) == stamps


def test_the_module_imports_nothing_heavy():
    code = (
        "import sys, hr_pipeline.contract.instants; "
        "print(sorted(m for m in ('pyarrow', 'pandas', 'numpy', 'airflow', 'fastavro') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
