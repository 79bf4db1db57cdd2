"""A restore whose backup the warehouse refuses (its rows break the table's key) is a refusal:
the run fails at once, not after retries, with one line saying why, and the table is unchanged."""

from __future__ import annotations

import hashlib
import io
import os

from hr_pipeline.backup import backups as backup_logic


def test_a_backup_with_an_id_twice_is_refused_without_retries(airflow_db, warehouse, blob_store):
    import fastavro

    from tests.integration.test_backup_restore_dags import JOBS, fill, load_dag, table_rows

    fill(warehouse, "jobs", JOBS)
    made = backup_logic.backup_table("jobs", warehouse, blob_store)
    container = os.environ["AZURE_BLOB_CONTAINER_BACKUPS"]
    reader = fastavro.reader(io.BytesIO(blob_store.download_bytes(container, made.blob_name)))
    records = list(reader)
    header = {key: value for key, value in reader.metadata.items() if not key.startswith("avro.")}
    twice = io.BytesIO()
    fastavro.writer(
        twice,
        reader.writer_schema,
        records + records[:1],
        codec="deflate",
        metadata={**header, backup_logic.META_ROWS: str(len(records) + 1)},
    )
    data = twice.getvalue()
    metadata = blob_store.properties(container, made.blob_name).metadata
    blob_store.upload_bytes(
        container, made.blob_name, data, metadata={**metadata, "sha256": hashlib.sha256(data).hexdigest()}
    )

    run = load_dag("restore_table").test(run_conf={"table_name": "jobs", "backup": made.blob_name})

    assert run.state == "failed"
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance

    with settings.Session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id="restore_table", run_id=run.run_id).one()
        assert (ti.state, ti.try_number) == ("failed", 1)
    assert table_rows(warehouse, "jobs") == JOBS
