"""The latency benchmark's floor: DAGs of the pipeline's shape whose tasks do nothing.

Loaded only by benchmarks/latency_bench.py's stack (a second DAG bundle). Same shape, same
triggering as the real pipeline:

- a landing asset per table, watched by the same ``IncomingFilesTrigger`` (same poll interval),
  on a container of its own (``latency-floor``) so that it never races the real pipeline;
- ``latency_floor_on_landing`` (scheduled on them) starts ``latency_floor_ingest`` per table in the
  contract's order (TriggerDagRunOperator mapped over the tables, as ``ingest_on_landing``);
- ``latency_floor_ingest``: four tasks (wait_for_files, validate, load, archive) doing nothing,
  ``load`` attaching an asset event to the run's table through an alias, as ``ingest_table``;
- ``latency_floor_publish`` scheduled on the three table assets or daily, max_active_runs=1:
  render, build, the same number of checks in parallel (4 column checks + 3 cross-table checks),
  swap, record; all doing nothing.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronTriggerTimetable,
    Param,
    chain,
    dag,
    task,
)

from hr_pipeline.runtime.settings import landing_poll_seconds
from hr_pipeline.storage.landing import IncomingFilesTrigger

FLOOR_CONTAINER = "latency-floor"
TABLES = ("departments", "jobs", "hired_employees")
CHECKS = 7  # publish_metrics: 4 column checks + 3 cross-table checks (the bench verifies it)

LANDING = {
    table: Asset(
        name=f"floor.incoming.{table}",
        uri=f"hr-floor-landing://incoming/{table}",
        group="floor",
        watchers=[
            AssetWatcher(
                name=f"floor_incoming_{table}",
                trigger=IncomingFilesTrigger(table, FLOOR_CONTAINER, poll_seconds=landing_poll_seconds()),
            )
        ],
    )
    for table in TABLES
}
TABLE_ASSETS = {
    table: Asset(name=f"floor.warehouse.{table}", uri=f"hr-floor://warehouse/{table}", group="floor")
    for table in TABLES
}
INGESTED = AssetAlias(name="floor.ingested_table", group="floor")


@dag(
    dag_id="latency_floor_on_landing",
    schedule=LANDING["departments"] | LANDING["jobs"] | LANDING["hired_employees"],
    catchup=False,
    max_active_runs=16,
    tags=["bench"],
)
def latency_floor_on_landing():
    @task
    def tables_that_landed(triggering_asset_events=None) -> list[dict]:
        landed = {asset.name.rsplit(".", 1)[-1] for asset in (triggering_asset_events or {})}
        return [{"table_name": table} for table in TABLES if table in landed]

    TriggerDagRunOperator.partial(
        task_id="start_ingest",
        trigger_dag_id="latency_floor_ingest",
        wait_for_completion=False,
    ).expand(conf=tables_that_landed())


@dag(
    dag_id="latency_floor_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=16,
    tags=["bench"],
    params={"table_name": Param("departments", enum=list(TABLES))},
)
def latency_floor_ingest():
    @task
    def wait_for_files():
        pass

    @task
    def validate():
        return []

    @task(outlets=[INGESTED])
    def load(params: dict, outlet_events=None):
        outlet_events[INGESTED].add(TABLE_ASSETS[params["table_name"]], extra={"rows_loaded": 0})

    @task
    def archive():
        pass

    chain(wait_for_files(), validate(), load(), archive())


@dag(
    dag_id="latency_floor_publish",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"),
        assets=(TABLE_ASSETS["departments"] | TABLE_ASSETS["jobs"] | TABLE_ASSETS["hired_employees"]),
    ),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["bench"],
)
def latency_floor_publish():
    @task
    def render_metric_sql():
        pass

    @task
    def build_metric_tables_aside():
        pass

    @task
    def check(n: int):
        pass

    @task
    def swap_in_metric_tables():
        pass

    @task
    def record_published_row_counts():
        pass

    checks = [check.override(task_id=f"check_{n}")(n) for n in range(CHECKS)]
    build = build_metric_tables_aside()
    swap = swap_in_metric_tables()
    render_metric_sql() >> build >> checks >> swap >> record_published_row_counts()


latency_floor_on_landing()
latency_floor_ingest()
latency_floor_publish()
