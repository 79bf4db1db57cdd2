"""backup_tables: one AVRO backup per table, daily, to the backups container.

Each mapped task reads its table as of one instant and uploads
``<table>/<table>-<YYYYMMDDTHHMMSS.ffffffZ>.avro`` (that instant, UTC), verified after the upload;
then the retention (``HR_BACKUP_RETENTION_DAYS``, default 30) deletes older backups, never a
table's newest.
The logic is in ``include/hr_pipeline/backup/backups.py``.

Each new backup is an asset event of ``backups.<table>`` (through the alias ``hr.backed_up_table``)
whose ``extra`` has its row count, blob, size, sha256 and instant: the Assets view lists them. No
DAG is scheduled on these assets; ``check_backup_freshness`` reads the container itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from hr_pipeline.contract.tables import tables_param
from hr_pipeline.ops.alerts import task_defaults
from hr_pipeline.ops.assets import BACKED_UP_TABLE, BACKUP_ASSETS


@dag(
    dag_id="backup_tables",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["hr", "backup"],
    default_args=task_defaults(retry_delay=timedelta(minutes=2)),
    params={
        "tables": tables_param("The tables to back up (each gets its own AVRO file)."),
    },
    doc_md=__doc__,
)
def backup_tables():
    @task
    def selected_tables(params=None) -> list[str]:
        return list(params["tables"])

    @task(map_index_template="{{ table_name }}", outlets=[BACKED_UP_TABLE])
    def backup_table(table_name: str, outlet_events=None) -> dict:
        from airflow.sdk import get_current_context

        from hr_pipeline.backup import backups as backup

        get_current_context()["table_name"] = table_name
        result = backup.backup_table(table_name)
        outlet_events[BACKED_UP_TABLE].add(
            BACKUP_ASSETS[table_name],
            extra={
                "rows": result.rows,
                "blob": f"{result.container}/{result.blob_name}",
                "bytes": result.bytes,
                "sha256": result.sha256,
                "instant": result.instant,
            },
        )
        return result.as_dict()

    @task(map_index_template="{{ table_name }}")
    def apply_retention(table_name: str) -> list[str]:
        from airflow.sdk import get_current_context

        from hr_pipeline.backup import backups as backup
        from hr_pipeline.backup.point_in_time import prune_journal

        get_current_context()["table_name"] = table_name
        deleted = backup.prune_backups(table_name)
        prune_journal(table_name)  # what no kept backup needs any more for a point-in-time restore
        return deleted

    tables = selected_tables()
    backup_table.expand(table_name=tables) >> apply_retention.expand(table_name=tables)


backup_tables_dag = backup_tables()

if __name__ == "__main__":
    backup_tables_dag.test()
