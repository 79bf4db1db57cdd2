"""backup_tables: one AVRO backup per table, daily, to the backups container.

Each mapped task reads its table as of one instant and uploads
``<table>/<table>-<YYYYMMDDTHHMMSSZ>.avro``, verified after the upload; then the retention
(``HR_BACKUP_RETENTION_DAYS``, default 30) deletes older backups, never a table's newest.
The logic is in ``include/hr_pipeline/backup.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from hr_pipeline.contracts import TABLE_NAMES


@dag(
    dag_id="backup_tables",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["hr", "backup"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "tables": Param(
            list(TABLE_NAMES),
            type="array",
            items={"type": "string", "enum": list(TABLE_NAMES)},
            uniqueItems=True,
            minItems=1,
            title="Tables",
            description="The tables to back up (each gets its own AVRO file).",
        ),
    },
    doc_md=__doc__,
)
def backup_tables():
    @task
    def selected_tables(params=None) -> list[str]:
        return list(params["tables"])

    @task(map_index_template="{{ table_name }}")
    def backup_table(table_name: str) -> dict:
        from airflow.sdk import get_current_context

        from hr_pipeline import backup

        get_current_context()["table_name"] = table_name
        return backup.backup_table(table_name).as_dict()

    @task(map_index_template="{{ table_name }}")
    def apply_retention(table_name: str) -> list[str]:
        from airflow.sdk import get_current_context

        from hr_pipeline import backup

        get_current_context()["table_name"] = table_name
        return backup.prune_backups(table_name)

    tables = selected_tables()
    backup_table.expand(table_name=tables) >> apply_retention.expand(table_name=tables)


dag = backup_tables()

if __name__ == "__main__":
    dag.test()
