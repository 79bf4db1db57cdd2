"""publish_metrics: rebuilds the metric tables analysts read, daily and whenever a table changes.

1. ``render_metric_sql`` turns each metric's definition (``include/hr_pipeline/metrics/*.sql``)
   into the SQL of the warehouse's dialect (SQLite, PostgreSQL or SQL Server).
2. ``build_metric_tables_aside`` rebuilds every table as ``<name>__next`` in one transaction.
3. The ``check_*`` tasks (common-sql checks) run on the ``__next`` tables: no NULL key, no
   negative or NULL count, each listed department's quarters add up to its hires. One failure
   stops the run here, and the published tables stay as they were.
4. ``swap_in_metric_tables`` replaces every published table's rows by its ``__next`` rows in one
   transaction: a reader sees the previous tables or the new ones, never an empty or partial one.
5. ``record_published_row_counts`` counts each published table's rows and emits one asset event
   per table (``warehouse.<table>``, ``extra`` ``{"rows": n}``), for the Assets view.

Published: ``quarterly_hires_2021``, ``departments_above_mean_2021``, ``hires_by_quarter``,
``departments_above_mean``. Read them in their documented order (docs/CONTRACT.md) with the ORDER BY written at the top of
each metric's .sql file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from hr_pipeline.metrics import CHECK_TASK_IDS, data_quality_checks
from hr_pipeline.ops.alerts import task_defaults
from hr_pipeline.ops.assets import METRIC_ASSETS, TABLE_ASSETS
from hr_pipeline.runtime.settings import WAREHOUSE_CONN_ID

departments, jobs, hired_employees = (
    TABLE_ASSETS["departments"],
    TABLE_ASSETS["jobs"],
    TABLE_ASSETS["hired_employees"],
)


@dag(
    dag_id="publish_metrics",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"),
        assets=(departments | jobs | hired_employees),
    ),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,  # one run at a time owns the __next tables
    tags=["hr", "metrics"],
    default_args=task_defaults(retry_delay=timedelta(minutes=1)),
    doc_md=__doc__,
)
def publish_metrics():
    @task(multiple_outputs=True)
    def render_metric_sql() -> dict:
        from hr_pipeline.metrics import publish_plan
        from hr_pipeline.warehouse.facade import Warehouse

        return publish_plan(Warehouse(WAREHOUSE_CONN_ID).dialect).as_xcom()

    sql = render_metric_sql()
    build_metric_tables_aside = SQLExecuteQueryOperator(
        task_id="build_metric_tables_aside",
        conn_id=WAREHOUSE_CONN_ID,
        sql=sql["build"],
        autocommit=False,
        do_xcom_push=False,
    )
    checks = data_quality_checks({name: sql[name] for name in CHECK_TASK_IDS}, WAREHOUSE_CONN_ID)
    swap_in_metric_tables = SQLExecuteQueryOperator(
        task_id="swap_in_metric_tables",
        conn_id=WAREHOUSE_CONN_ID,
        sql=sql["swap"],
        autocommit=False,
        do_xcom_push=False,
    )

    @task(inlets=list(TABLE_ASSETS.values()), outlets=list(METRIC_ASSETS.values()))
    def record_published_row_counts(outlet_events=None) -> dict[str, int]:
        from hr_pipeline.metrics import published_row_counts
        from hr_pipeline.warehouse.facade import Warehouse

        # Only this DAG writes the published tables, one run at a time: these are the swap's rows.
        counts = published_row_counts(Warehouse(WAREHOUSE_CONN_ID))
        for name, rows in counts.items():
            outlet_events[METRIC_ASSETS[name]].extra = {"rows": rows}
        return counts

    build_metric_tables_aside >> checks >> swap_in_metric_tables >> record_published_row_counts()


publish_metrics_dag = publish_metrics()

if __name__ == "__main__":
    publish_metrics_dag.test()
