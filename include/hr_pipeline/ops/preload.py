"""What the pipeline's task processes import, imported once in the process they are forked from.

Airflow forks each task process from a warm parent: the LocalExecutor's workers (forked in turn
from the scheduler's ``forkserver`` when ``[scheduler] mp_start_method = forkserver``) and
Celery's prefork pool. A module imported there is in every task process already, shared
copy-on-write; one imported in the task costs every task its import (Great Expectations and
what it imports: seconds). The local stack sets ``[scheduler] mp_forkserver_preload`` to this
module (``hr_pipeline.local.env``).

Never imported by a DAG file: the dag-processor stays light (tests/dags).
"""

from __future__ import annotations

import importlib
import logging

from hr_pipeline.runtime.memory import return_large_buffers_to_the_system

log = logging.getLogger(__name__)

# The heavy libraries first, then the modules of the tasks and of the DAG files they parse.
MODULES = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.csv",
    "great_expectations",
    "psycopg",
    "psycopg2",
    "fastavro",
    "azure.storage.blob",
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.microsoft.azure.hooks.wasb",
    "airflow.providers.postgres.hooks.postgres",
    "hr_pipeline.ingest.validate",
    "hr_pipeline.ingest.expectations",
    "hr_pipeline.ingest.load",
    "hr_pipeline.ingest.archive",
    "hr_pipeline.backup.backups",
    "hr_pipeline.backup.restore",
    "hr_pipeline.metrics",
    "hr_pipeline.ops.alerts",
    "hr_pipeline.ops.assets",
    "hr_pipeline.ops.run_states",
    "hr_pipeline.ops.sensors",
)


def preload(modules: tuple[str, ...] = MODULES) -> list[str]:
    """Import ``modules``; returns those that could not be imported (a missing optional library
    costs the task its import, it breaks nothing)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def load_plugins() -> None:
    """Airflow's plugins and listeners loaded here, as a task process's first step loads them
    (the task runner's ``startup`` calls ``get_listener_manager``, which is cached): a forked task
    finds them loaded instead of importing every plugin (over half a second on two cores,
    benchmarks/RESULTS.md). A plugin that fails here is left for the task to load and report."""
    try:
        from airflow.sdk.listener import get_listener_manager

        get_listener_manager()
    except Exception:
        log.exception("Airflow's plugins could not be preloaded: each task process loads them itself")


return_large_buffers_to_the_system()  # inherited by every process forked from here
preload()
load_plugins()
