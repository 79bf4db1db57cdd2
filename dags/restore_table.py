"""restore_table: replace one table's rows with a backup's, atomically.

Params: ``table_name``; ``backup`` (``latest`` or a backup's blob name); ``as_of`` (optional ISO
instant: the newest backup taken at or before it). The backup is checked (sha256, table, contract
version, schema), staged, checked for referential integrity and swapped in inside one transaction;
on any refusal the table is unchanged. The logic is in ``include/hr_pipeline/backup/restore.py``.

Which asset changed depends on a param, so the task cannot list it statically: listing all three
tables as outlets would tell publish_metrics (and anyone else) that every table changed. The task
declares an ``AssetAlias`` as its outlet instead and, once the restore committed, attaches one
asset event to the restored table's asset only (``outlet_events[alias].add(asset)``): DAGs
scheduled on that asset run as for any other producer; a failed restore emits nothing.
"""

from __future__ import annotations

import logging
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
            description="Optional: restore the newest backup taken at or before this instant (UTC).",
        ),
    },
    doc_md=__doc__,
)
def restore_table():
    @task(outlets=[RESTORED_TABLE])
    def restore(params=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from hr_pipeline.backup import restore as restore_logic

        try:
            result = restore_logic.restore_table(
                params["table_name"], backup=params["backup"], as_of=params["as_of"]
            )
        except restore_logic.REFUSALS as refusal:
            # The refusal is the whole story: said on one line of the log, not retried.
            logging.getLogger("hr_pipeline.backup.restore").error("Restore refused: %s", refusal)
            raise AirflowFailException(f"Restore refused: {refusal}") from None
        except Exception as error:
            from hr_pipeline.ingest.load import is_data_error

            if not is_data_error(error):
                raise  # a connection or service error: retried
            # The backup's rows break a rule of the table (ids twice, say): the table is left as
            # it was, and trying again cannot help.
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            message = (
                f"Restore refused: the warehouse refused the backup's rows for "
                f"{params['table_name']} ({type(error).__name__}: {first_line}); the table "
                "is unchanged"
            )
            logging.getLogger("hr_pipeline.backup.restore").error(message)
            raise AirflowFailException(message) from None
        outlet_events[RESTORED_TABLE].add(
            TABLE_ASSETS[result.table],
            extra={"restored_from": result.blob_name, "rows": result.rows},
        )
        return result.as_dict()

    restore()


dag = restore_table()

if __name__ == "__main__":
    dag.test()
