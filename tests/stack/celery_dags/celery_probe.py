"""A trivial DAG for the Celery stack test: six short tasks to spread over two workers, each
saying what its process found imported at its first line (what the worker preloaded)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="hr_celery_probe",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["test", "celery"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
)
def hr_celery_probe():
    @task
    def work(index: int) -> dict:
        import os
        import sys

        from hr_pipeline.runtime.startup import process_age_seconds

        found = {
            "start_up": process_age_seconds(),
            "great_expectations": "great_expectations" in sys.modules,
            "hr_pipeline_ingest": "hr_pipeline.ingest.validate" in sys.modules,
        }
        time.sleep(4)
        return {"index": index, "worker": os.environ.get("HR_WORKER_HOSTNAME"), **found}

    work.expand(index=list(range(6)))


hr_celery_probe()

if __name__ == "__main__":
    hr_celery_probe().test()
