"""restore_table: replace one table's rows with a backup's, or with the table as it was at an
instant, atomically.

Params: ``table_name``; ``backup`` (``latest`` or a backup's blob name); ``as_of`` (optional ISO
instant: the newest backup taken at or before it, plus every load journaled after that backup up
to the instant); ``dry_run`` (change nothing: the log and the task's return value say which
backup and which loads would be applied, and how many rows would be added, removed and changed).
The backup is checked (sha256, table, contract version, schema), staged, the loads replayed
(each checked against its journaled sha256), the references checked and the rows swapped in
inside one transaction; on any refusal the table is unchanged. The logic is in
``include/hr_pipeline/backup/restore.py`` and ``point_in_time.py``.

Which asset changed depends on a param, so the task cannot list it statically: listing all three
tables as outlets would tell publish_metrics (and anyone else) that every table changed. The task
declares an ``AssetAlias`` as its outlet instead and, once the restore committed, attaches one
asset event to the restored table's asset only (``outlet_events[alias].add(asset)``): DAGs
scheduled on that asset run as for any other producer; a failed restore or a dry run emits nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from hr_pipeline.contract.tables import table_param
from hr_pipeline.ops.alerts import task_defaults
from hr_pipeline.ops.assets import RESTORED_TABLE, TABLE_ASSETS


@dag(
    dag_id="restore_table",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["hr", "backup", "restore"],
    # Retries are for passing faults (network, a lock timeout); a refusal (no such backup, a
    # corrupted file, broken references) fails at once: it would fail the same way again.
    default_args=task_defaults(retry_delay=timedelta(minutes=1)),
    params={
        "table_name": table_param("The table whose rows are replaced."),
        "backup": Param(
            "latest",
            type="string",
            minLength=1,
            title="Backup",
            description="'latest', or a backup's blob name (<table>/<table>-<YYYYMMDDTHHMMSS.ffffffZ>.avro).",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="As of",
            description=(
                "Optional: the table as it was at this instant (UTC): the newest backup taken at or "
                "before it, plus every load committed after that backup up to the instant."
            ),
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Change nothing: say which backup and loads would be applied, and how many "
            "rows would be added, removed and changed.",
        ),
    },
    doc_md=__doc__,
)
def restore_table():
    @task(outlets=[RESTORED_TABLE])
    def restore(params=None, outlet_events=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from hr_pipeline.backup.restore import RestoreRefused, restore_or_refuse

        try:
            result = restore_or_refuse(
                params["table_name"],
                backup=params["backup"],
                as_of=params["as_of"],
                dry_run=bool(params.get("dry_run")),
                run_id=run_id,
            )
        except RestoreRefused as refusal:  # the table is unchanged; it would fail the same way again
            raise AirflowFailException(str(refusal)) from None
        if result.dry_run:
            return result.as_dict()
        outlet_events[RESTORED_TABLE].add(
            TABLE_ASSETS[result.table],
            extra={"restored_from": result.blob_name, "rows": result.rows},
        )
        return result.as_dict()

    restore()


restore_table_dag = restore_table()

if __name__ == "__main__":
    restore_table_dag.test()
