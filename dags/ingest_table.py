"""ingest_table: wait for CSV extracts of one table, validate them, load the valid rows, archive.

Trigger it from the UI (pick the table in the form) or the REST API with
``{"table_name": "jobs"}``. Every file waiting under ``incoming/<table>/`` is processed, in name
order; bad rows end up in ``rejected/<table>/<day>/<file>.rejects.csv`` with their reasons. With
nothing waiting, the run waits ``wait_minutes`` for a file; if another run of the table is
already waiting, this one ends (skipped) and leaves the files to it.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, chain, dag, get_current_context, task

from hr_pipeline.contract.tables import table_param
from hr_pipeline.ops.alerts import task_defaults
from hr_pipeline.ops.assets import INGESTED_TABLE, LANDED_FILES, TABLE_ASSETS
from hr_pipeline.ops.sensors import IncomingFilesSensor
from hr_pipeline.runtime.settings import (
    BLOB_CONN_ID,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_REJECT_RATIO,
    DEFAULT_WAIT_MINUTES,
    raw_container,
)


def _run_day() -> str:
    """The day a run files its archive and rejects under: when it was triggered (UTC)."""
    return get_current_context()["dag_run"].run_after.strftime("%Y-%m-%d")


@dag(
    dag_id="ingest_table",
    schedule=None,
    catchup=False,
    # Runs of different tables never wait on each other; runs of one table take turns through
    # the table's ingest lock, taken by validate and released by archive (hr_pipeline.storage.claims).
    max_active_runs=16,
    tags=["hr", "ingest"],
    doc_md=__doc__,
    default_args=task_defaults(retry_delay=timedelta(seconds=30)),
    user_defined_macros={"raw_container": raw_container},
    params={
        "table_name": table_param("Which table's extracts to ingest (files under incoming/<table>/)."),
        "batch_size": Param(
            DEFAULT_BATCH_SIZE,
            type="integer",
            minimum=1,
            maximum=1_000_000,
            title="Load batch size",
            description="Rows per load transaction.",
        ),
        "wait_minutes": Param(
            DEFAULT_WAIT_MINUTES,
            type="integer",
            minimum=0,
            maximum=1440,
            title="Wait for a file (minutes)",
            description="With no file waiting, how long this run waits for one to land; 0 ends "
            "it at once. A run while another run of the table already waits ends and leaves the "
            "files to that one.",
        ),
        "max_reject_ratio": Param(
            DEFAULT_MAX_REJECT_RATIO,
            type="number",
            minimum=0,
            maximum=1,
            title="Largest share of rejected rows",
            description="A file with a larger share of rejected rows is not loaded: it is set aside "
            "whole in rejected/ with a reason file, and the run fails. 0.10 = 10%; 1 loads any file.",
        ),
    },
)
def ingest_table():
    wait_for_files = IncomingFilesSensor(
        task_id="wait_for_files",
        container_name="{{ raw_container() }}",
        table_name="{{ params.table_name }}",
        wait_minutes="{{ params.wait_minutes }}",
        wasb_conn_id=BLOB_CONN_ID,
        deferrable=True,
        poke_interval=15,
        # The DAG's retries apply: a failed listing of the folder (the trigger reports any error
        # once and gives up) is retried; running out of time is not (AirflowSensorTimeout).
    )

    @task(inlets=list(LANDED_FILES.values()))
    def validate(params: dict, run_id: str) -> list[dict]:
        from hr_pipeline.ingest.validate import validate_incoming
        from hr_pipeline.ops.run_states import ended_runs_of_this_dag
        from hr_pipeline.runtime.startup import log_start_up

        log_start_up("validate")
        return validate_incoming(
            params["table_name"],
            run_id=run_id,
            day=_run_day(),
            run_has_ended=ended_runs_of_this_dag(get_current_context()),
            max_reject_ratio=params["max_reject_ratio"],
        )

    @task(inlets=list(LANDED_FILES.values()), outlets=[INGESTED_TABLE])
    def load(validations: list[dict], params: dict, outlet_events=None) -> list[dict]:
        from hr_pipeline.ingest.load import load_validated, what_changed
        from hr_pipeline.runtime.startup import log_start_up

        log_start_up("load")
        table = params["table_name"]
        loads = load_validated(table, validations, batch_size=params["batch_size"])
        changed = what_changed(validations, loads)
        if changed["rows_loaded"]:
            # The event names the table that changed (publish_metrics is scheduled on it) and
            # says what changed, for the Assets view.
            outlet_events[INGESTED_TABLE].add(TABLE_ASSETS[table], extra=changed)
        return loads

    # Not after a skipped sensor (nothing was claimed); after a load of nothing, yes.
    @task(trigger_rule="none_failed_min_one_success")
    def archive(validations: list[dict], loads: list[dict] | None, params: dict) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        from hr_pipeline.ingest.archive import archive_ingested, failed_files_message

        summary = archive_ingested(
            params["table_name"],
            validations,
            day=_run_day(),
            run_id=get_current_context()["run_id"],
            loads=loads,
        )
        problem = failed_files_message(validations, loads)
        if problem:
            raise AirflowFailException(problem)
        return summary

    validations = validate()
    loads = load(validations)
    chain(wait_for_files, validations, loads, archive(validations, loads))


ingest_table_dag = ingest_table()

if __name__ == "__main__":
    ingest_table_dag.test(run_conf={"table_name": "departments"})
