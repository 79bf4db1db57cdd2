"""The Celery configuration of the pipeline's workers (``[celery] celery_config_options``).

Airflow's default configuration, plus ``hr_pipeline.ops.preload`` in Celery's ``imports``: each
worker imports it at its start, before its pool processes begin taking tasks, so the task
processes forked from them find Great Expectations, the providers and Airflow's plugins loaded,
as the LocalExecutor's workers do (docs/deploy-azure.md, "Task start-up"). Imported by the Celery
workers and the scheduler's executor only, never by a DAG file.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

PRELOAD_MODULE = "hr_pipeline.ops.preload"

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), PRELOAD_MODULE),
}
