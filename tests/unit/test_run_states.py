"""Another run has ended only when Airflow says so; a state it cannot give is never "ended".

The task instance is a stand-in: its two calls ask Airflow's API server, which a unit test has
not got; each stand-in answers or fails as that server would."""

from __future__ import annotations

import pytest

from hr_pipeline.ops.run_states import RunStateUnknown, has_ended


class TaskInstance:
    def __init__(self, state=None, state_error=None, count=None, count_error=None):
        self.state, self.state_error = state, state_error
        self.count, self.count_error = count, count_error

    def get_dagrun_state(self, dag_id: str, run_id: str):
        if self.state_error:
            raise self.state_error
        return self.state

    def get_dr_count(self, dag_id: str, run_ids: list[str]) -> int:
        if self.count_error:
            raise self.count_error
        return self.count


@pytest.mark.parametrize(
    ("state", "ended"), [("success", True), ("failed", True), ("running", False), ("queued", False)]
)
def test_the_state_airflow_gives_decides(state, ended):
    assert has_ended(TaskInstance(state=state), "ingest_table", "run-1") is ended


def test_a_run_airflow_counts_no_more_has_ended():
    ti = TaskInstance(state_error=RuntimeError("404 not found"), count=0)
    assert has_ended(ti, "ingest_table", "deleted-run") is True


def test_a_run_that_exists_but_whose_state_cannot_be_read_is_unknown():
    ti = TaskInstance(state_error=TimeoutError("read timed out"), count=1)
    with pytest.raises(RunStateUnknown, match="run-1 of ingest_table could not be read .*read timed out"):
        has_ended(ti, "ingest_table", "run-1")


def test_when_airflow_answers_nothing_the_state_is_unknown():
    ti = TaskInstance(state_error=ConnectionError("refused"), count_error=ConnectionError("refused"))
    with pytest.raises(RunStateUnknown, match="counting it: ConnectionError"):
        has_ended(ti, "ingest_table", "run-1")


def test_an_unexpected_state_is_an_error_not_an_end():
    with pytest.raises(ValueError, match="^'exploded' is not a valid DagRunState$"):
        has_ended(TaskInstance(state="exploded"), "ingest_table", "run-1")
