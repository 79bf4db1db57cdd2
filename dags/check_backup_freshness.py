"""check_backup_freshness: every hour, is each table's newest backup younger than 26 hours?

Lists the backups container (``hr_pipeline.backup.backups.list_backups``) and fails, naming each stale
table with its newest backup and that backup's age (or "no backup"), when one is older than
``max_age_hours``; the failure alert (``hr_pipeline.ops.alerts``) carries that line. A stale
table is not retried (it would be as stale a minute later); a listing that fails is.

Why a check of the container rather than a deadline alert on backup_tables: a deadline belongs to
a run, so it cannot fire when no run exists (backup_tables paused, the scheduler not creating it),
and a run that ends in time says nothing of a table left out of it or of backups deleted since. The
container is what a restore would use. The logic is in ``include/hr_pipeline/backup/freshness.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from hr_pipeline.contract.tables import tables_param
from hr_pipeline.ops.alerts import task_defaults


@dag(
    dag_id="check_backup_freshness",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["hr", "backup", "alerts"],
    default_args=task_defaults(retry_delay=timedelta(minutes=2)),
    params={
        "tables": tables_param("The tables whose newest backup is checked."),
        "max_age_hours": Param(
            26,
            type="number",
            exclusiveMinimum=0,
            title="Largest age (hours)",
            description="A table whose newest backup is older than this (or has none) is stale.",
        ),
    },
    doc_md=__doc__,
)
def check_backup_freshness():
    @task
    def check_backups(params=None) -> list[dict]:
        from hr_pipeline.backup.freshness import check_freshness

        return check_freshness(params["tables"], max_age=timedelta(hours=params["max_age_hours"]))

    check_backups()


check_backup_freshness_dag = check_backup_freshness()

if __name__ == "__main__":
    check_backup_freshness_dag.test()
