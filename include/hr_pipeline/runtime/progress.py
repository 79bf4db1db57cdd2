"""Progress lines for long work: rows done, of how many when known, rows/s, and the expected end.

Task logs are where Airflow users watch a task, so a task working through many rows logs a line
about every ``every_seconds`` (10 s by default) while it works, and one line at the end:

    validate hired_employees.csv: 1,200,000 of 5,000,000 rows (24.0%), 118,400 rows/s,
    expected end 14:03:12 UTC (in 32 s)

Small work stays quiet: nothing is logged for a known total of at most ``min_rows`` (100,000 by
default), nor, with the total unknown, before ``min_rows`` rows are done.

Usage, in the loop that does the work::

    progress = Progress(f"load {table}", total=rows_in_file)
    for batch in batches:
        write(batch)
        progress.advance(len(batch))
    progress.finish()

The clocks are injectable (``clock``: seconds, monotonic; ``wall_clock``: the current UTC
``datetime``) so tests can drive time without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

log = logging.getLogger(__name__)

# Set on every progress record (``record.hr_progress``): a console (``make demo``) picks them out.
PROGRESS_RECORD_FLAG = "hr_progress"
DEFAULT_EVERY_SECONDS = 10.0
DEFAULT_MIN_ROWS = 100_000


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts rows done and logs a progress line about every ``every_seconds``.

    ``what``: the work, as the line starts (``"validate incoming/jobs/jobs.csv"``).
    ``total``: the rows to do, when known (None: no share, no expected end).
    ``logger``: where the lines go (this module's logger by default).
    """

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        logger: logging.Logger | None = None,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        min_rows: int = DEFAULT_MIN_ROWS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ):
        self.what = what
        self.total = total
        self.done = 0
        self.logger = logger or log
        self.every_seconds = every_seconds
        self.min_rows = min_rows
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock()
        self._last_line = self._started
        self.lines_logged = 0

    @property
    def is_long(self) -> bool:
        """Whether this work is big enough to report: over ``min_rows`` rows (known or done)."""
        if self.total is not None:
            return self.total > self.min_rows
        return self.done > self.min_rows

    def advance(self, rows: int) -> None:
        """``rows`` more are done; logs a line when ``every_seconds`` have passed since the last."""
        self.done += rows
        now = self._clock()
        if self.is_long and now - self._last_line >= self.every_seconds:
            self._log(now)

    def finish(self) -> None:
        """The closing line (rows done, overall rate), for work that was long enough to report."""
        if self.is_long:
            now = self._clock()
            elapsed = now - self._started
            self.logger.info(
                "%s: finished, %s rows in %s (%s rows/s)",
                self.what,
                f"{self.done:,}",
                _duration(elapsed),
                f"{self._rate(elapsed):,.0f}",
                extra={PROGRESS_RECORD_FLAG: True},
            )
            self.lines_logged += 1

    def line(self, now: float | None = None) -> str:
        """The progress line as of ``now`` (the clock's reading; default: now)."""
        now = self._clock() if now is None else now
        elapsed = now - self._started
        rate = self._rate(elapsed)
        text = f"{self.what}: {self.done:,}"
        if self.total is None:
            return f"{text} rows, {rate:,.0f} rows/s"
        share = self.done / self.total if self.total else 1.0
        text += f" of {self.total:,} rows ({share:.1%}), {rate:,.0f} rows/s"
        if rate > 0 and self.done < self.total:
            remaining = (self.total - self.done) / rate
            end = self._wall_clock() + timedelta(seconds=remaining)
            text += f", expected end {end:%H:%M:%S} UTC (in {_duration(remaining)})"
        return text

    def _rate(self, elapsed: float) -> float:
        return self.done / elapsed if elapsed > 0 else 0.0

    def _log(self, now: float) -> None:
        self.logger.info("%s", self.line(now), extra={PROGRESS_RECORD_FLAG: True})
        self._last_line = now
        self.lines_logged += 1
