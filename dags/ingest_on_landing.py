"""ingest_on_landing: files that land under ``incoming/<table>/`` start ``ingest_table`` for that
table, with no click.

Each table's landing asset is watched in the triggerer (``hr_pipeline.storage.landing``): files landing
together make one event, so one run. Several tables landing at once start their ingests in the
contract's order (departments, jobs, then hired_employees, which also waits for the ingests of the
tables it references). Runs started by hand, from the UI or the REST API, are unaffected.
Switch it off with ``HR_INGEST_ON_LANDING=false`` (then the assets have no watcher).
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from hr_pipeline.contract.tables import TABLE_NAMES
from hr_pipeline.ops.alerts import task_defaults
from hr_pipeline.ops.assets import LANDED_FILES


@dag(
    dag_id="ingest_on_landing",
    schedule=LANDED_FILES["departments"] | LANDED_FILES["jobs"] | LANDED_FILES["hired_employees"],
    catchup=False,
    max_active_runs=16,
    tags=["hr", "ingest"],
    doc_md=__doc__,
    default_args=task_defaults(),
)
def ingest_on_landing():
    @task
    def tables_that_landed(triggering_asset_events=None) -> list[dict]:
        from hr_pipeline.storage.landing import ingest_confs

        return ingest_confs(triggering_asset_events, TABLE_NAMES)

    TriggerDagRunOperator.partial(
        task_id="start_ingest",
        trigger_dag_id="ingest_table",
        wait_for_completion=False,
    ).expand(conf=tables_that_landed())


ingest_on_landing_dag = ingest_on_landing()

if __name__ == "__main__":
    ingest_on_landing_dag.test()
