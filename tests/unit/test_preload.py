"""``ops.preload``: what the forkserver of task processes does before it forks them."""

from __future__ import annotations

import json
import subprocess
import sys

_PROGRAM = """
import json
import hr_pipeline.ops.preload
from airflow.sdk.listener import get_listener_manager
from hr_pipeline.runtime import memory
print(json.dumps({
    "listener_managers_cached": get_listener_manager.cache_info().currsize,
    "large_buffers_returned": memory._applied,
    "great_expectations_imported": "great_expectations" in __import__("sys").modules,
}))
"""


def test_the_preloaded_parent_has_the_plugins_loaded_and_the_allocator_set():
    done = subprocess.run([sys.executable, "-c", _PROGRAM], check=True, capture_output=True, text=True)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["listener_managers_cached"] == 1, "a forked task would load every plugin itself"
    assert state["large_buffers_returned"], "malloc's mmap threshold is not fixed before the fork"
    assert state["great_expectations_imported"], "the validate task would import GX itself"


def test_celery_workers_import_the_preload_and_keep_airflow_s_defaults():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from hr_pipeline.ops.celery_config import CELERY_CONFIG, PRELOAD_MODULE

    assert PRELOAD_MODULE == "hr_pipeline.ops.preload"
    assert PRELOAD_MODULE in CELERY_CONFIG["imports"]
    assert {key: value for key, value in CELERY_CONFIG.items() if key != "imports"} == {
        key: value for key, value in DEFAULT_CELERY_CONFIG.items() if key != "imports"
    }, "only the imports differ from Airflow's default configuration"
