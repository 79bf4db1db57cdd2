"""Whether another run of a DAG has ended, from Airflow's Task SDK, for the ingest lock's take-over.

Ended means Airflow says so: the run's state is ``success`` or ``failed``, or Airflow counts no run
with that id (it was deleted). Anything Airflow cannot answer raises ``RunStateUnknown``: an
unreadable state is never taken for an ended run, since taking over a live run's lock would let
two loads of one table race.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ENDED_STATES = ("success", "failed")


class RunStateUnknown(RuntimeError):
    """Airflow could not say what state a run is in."""


def has_ended(ti: Any, dag_id: str, run_id: str) -> bool:
    """Whether run ``run_id`` of ``dag_id`` has ended; ``ti``: the running task instance, whose
    ``get_dagrun_state`` and ``get_dr_count`` ask Airflow's API server."""
    from airflow.sdk import DagRunState

    try:
        state = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    except Exception as error:
        try:
            count = ti.get_dr_count(dag_id=dag_id, run_ids=[run_id])
        except Exception as second:  # noqa: BLE001 - raised as RunStateUnknown
            raise RunStateUnknown(
                f"the state of run {run_id} of {dag_id} could not be read ({type(error).__name__}: "
                f"{error}; counting it: {type(second).__name__}: {second})"
            ) from error
        if count == 0:
            return True  # Airflow has no such run any more
        raise RunStateUnknown(
            f"the state of run {run_id} of {dag_id} could not be read ({type(error).__name__}: {error})"
        ) from error
    return DagRunState(str(getattr(state, "value", state))) in {DagRunState(s) for s in ENDED_STATES}


def ended_runs_of_this_dag(context: Any) -> Callable[[str], bool]:
    """``has_ended`` for other runs of the DAG of ``context`` (a task's context)."""
    ti, dag_id = context["ti"], context["dag"].dag_id
    return lambda run_id: has_ended(ti, dag_id, run_id)
