"""`make demo`'s step lines: the task under way shown in place on a terminal, progress lines of
long work under the step, one line per step when the output is piped."""

from __future__ import annotations

import io
import logging

import pytest

from hr_pipeline.local import demo
from hr_pipeline.runtime.progress import Progress


class FakeConsole:
    """``demo.Console`` without its file descriptors: what it says, on a terminal or piped."""

    def __init__(self, terminal: bool):
        self.out = io.StringIO()
        self.out.isatty = lambda: terminal
        self.log = io.StringIO()

    @property
    def is_terminal(self) -> bool:
        return self.out.isatty()

    say = demo.Console.say


@pytest.fixture
def progress_to_console():
    handler = demo._ProgressToConsole()
    logger = logging.getLogger("hr_pipeline.test_demo_steps")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def _long_work(logger) -> None:
    ticks = iter(range(0, 1000, 11))  # a clock that moves 11 s per reading
    progress = Progress("validate jobs.csv", total=300_000, logger=logger, clock=lambda: next(ticks))
    progress.advance(150_000)
    progress.finish()


def test_piped_output_keeps_one_line_per_step_with_progress_lines_under_it(progress_to_console):
    console = FakeConsole(terminal=False)
    with demo._Step(console, "jobs", "ingesting"):
        demo._show_task({"ti": type("TI", (), {"task_id": "validate"})()})
        _long_work(progress_to_console)
    lines = console.out.getvalue().splitlines()
    assert lines[0].rstrip() == "jobs             ingesting ..."
    assert lines[1].strip().startswith("validate jobs.csv: 150,000 of 300,000 rows (50.0%)")
    assert lines[2].strip().startswith("validate jobs.csv: finished, 150,000 rows")
    assert lines[3].startswith("jobs             ingesting ... done in ")
    assert len(lines) == 4
    assert "[demo] jobs: validate" in console.log.getvalue()  # the task, in the log only


def test_a_terminal_shows_the_task_under_way_in_place():
    console = FakeConsole(terminal=True)
    with demo._Step(console, "jobs", "ingesting"):
        demo._show_task({"ti": type("TI", (), {"task_id": "load"})()})
    out = console.out.getvalue()
    assert "\r\x1b[Kjobs             ingesting ... load " in out
    # the outcome replaces the task's name on the same line
    assert out.rsplit("\r\x1b[K", 1)[1].startswith("jobs             ingesting ... done in ")


def test_no_step_under_way_no_output(progress_to_console):
    _long_work(progress_to_console)  # e.g. a DAG run outside a step: nothing breaks
