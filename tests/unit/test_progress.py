"""Progress lines of long work (``hr_pipeline.runtime.progress``), driven by a fake clock."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hr_pipeline.runtime.progress import Progress

NOON = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self):
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def _progress(total, clock, **kwargs) -> Progress:
    return Progress("validate jobs.csv", total=total, clock=clock, wall_clock=lambda: NOON, **kwargs)


def test_a_line_every_ten_seconds_with_share_rate_and_expected_end(caplog):
    clock = FakeClock()
    progress = _progress(1_000_000, clock)
    with caplog.at_level(logging.INFO, logger="hr_pipeline.runtime.progress"):
        for _ in range(9):  # 9 s, 100,000 rows a second: no line yet
            clock.seconds += 1
            progress.advance(100_000)
        assert caplog.messages == []
        clock.seconds += 1
        progress.advance(100_000)
    assert caplog.messages == [
        "validate jobs.csv: 1,000,000 of 1,000,000 rows (100.0%), 100,000 rows/s",
    ]


def test_the_expected_end_follows_the_rate():
    clock = FakeClock()
    progress = _progress(3_000_000, clock)
    clock.seconds += 10
    progress.advance(1_000_000)
    # 100,000 rows/s, 2,000,000 rows to go: 20 s after the wall clock's now
    assert progress.line() == (
        "validate jobs.csv: 1,000,000 of 3,000,000 rows (33.3%), 100,000 rows/s, "
        "expected end 12:00:20 UTC (in 20 s)"
    )


def test_long_remaining_times_read_in_minutes_and_hours():
    clock = FakeClock()
    progress = _progress(100_000_000, clock)
    clock.seconds += 10
    progress.advance(10_000)  # 1,000 rows/s: 99,990 s to go
    assert progress.line().endswith("expected end 15:46:30 UTC (in 27 h 46 min)")
    progress = _progress(1_000_000, clock)
    clock.seconds += 10
    progress.advance(10_000)
    assert progress.line().endswith("(in 16 min 30 s)")


def test_small_work_stays_quiet(caplog):
    clock = FakeClock()
    progress = _progress(100_000, clock)
    with caplog.at_level(logging.INFO, logger="hr_pipeline.runtime.progress"):
        for _ in range(100):
            clock.seconds += 5
            progress.advance(1_000)
        progress.finish()
    assert caplog.messages == []


def test_an_unknown_total_reports_once_past_the_threshold(caplog):
    clock = FakeClock()
    progress = _progress(None, clock)
    with caplog.at_level(logging.INFO, logger="hr_pipeline.runtime.progress"):
        clock.seconds += 20
        progress.advance(100_000)  # not over 100,000 yet
        assert caplog.messages == []
        clock.seconds += 20
        progress.advance(1)
        progress.finish()
    assert caplog.messages == [
        "validate jobs.csv: 100,001 rows, 2,500 rows/s",
        "validate jobs.csv: finished, 100,001 rows in 40 s (2,500 rows/s)",
    ]


def test_the_lines_go_to_the_given_logger(caplog):
    clock = FakeClock()
    logger = logging.getLogger("hr_pipeline.ingest.load")
    progress = _progress(200_000, clock, logger=logger)
    with caplog.at_level(logging.INFO, logger="hr_pipeline.ingest.load"):
        clock.seconds += 11
        progress.advance(150_000)
    assert [record.name for record in caplog.records] == ["hr_pipeline.ingest.load"]
    assert caplog.records[0].hr_progress is True  # what make demo picks out


@given(
    total=st.integers(min_value=100_001, max_value=10**9),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=30), st.integers(min_value=0, max_value=10**6)),
        max_size=40,
    ),
)
def test_never_two_lines_closer_than_the_interval(total, steps):
    clock = FakeClock()
    progress = _progress(total, clock)
    times = []
    for seconds, rows in steps:
        clock.seconds += seconds
        before = progress.lines_logged
        progress.advance(rows)
        if progress.lines_logged > before:
            times.append(clock.seconds)
    assert all(later - earlier >= 10 for earlier, later in zip(times, times[1:]))
    assert progress.done == sum(rows for _, rows in steps)


@pytest.mark.parametrize("elapsed", [0.0, 1e-9])
def test_no_division_by_zero_at_the_start(elapsed):
    clock = FakeClock()
    progress = _progress(1_000_000, clock)
    clock.seconds += elapsed
    progress.advance(0)
    assert "0 of 1,000,000 rows" in progress.line()
