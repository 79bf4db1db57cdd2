"""OpenLineage for the pipeline's tasks: the project's Assets as OpenLineage datasets.

The tasks declare what they read and write as Airflow Assets (``hr_pipeline.ops.assets``, through
``inlets=`` / ``outlets=`` of the task decorators), so the UI's asset graph shows them. The
OpenLineage provider turns an Asset into a dataset only for the URI schemes some provider
registered a converter for (``file``, ``postgres``, ``mssql``): not for this project's
``warehouse://``, ``hr-landing://`` and ``hr-backups://`` assets, which are deliberately
independent of the warehouse's dialect. ``HrAssetsExtractor`` is the provider's extension point
for that (``[openlineage] extractors``, env ``AIRFLOW__OPENLINEAGE__EXTRACTORS``):

- ``incoming.<table>``: the run's landing folder, ``incoming/<table>/`` of the raw container,
  in the OpenLineage naming of Azure Blob Storage (``wasbs://<container>@<account>...``). Tasks of
  ``ingest_table`` declare the three tables' landing assets (one DAG serves every table); only the
  run's own table (its ``table_name`` param) is reported.
- ``warehouse.<table>``: the table in the warehouse of the ``warehouse`` connection
  (``postgres://host:port`` + ``<database>.public.<table>``, ``mssql://host:port`` +
  ``<database>.dbo.<table>``, ``sqlite://<file>`` + ``main.<table>``).
- ``backups.<table>``: the table's folder in the backups container.
- An ``AssetAlias`` outlet (``hr.ingested_table``, ``hr.restored_table``): the run's table, and
  whatever asset the task attached to the alias at run time.

Everything else (other Assets) goes through the provider's own converters. Source code facets are
kept (the provider's ``PythonExtractor`` for ``@task`` functions).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from airflow.providers.openlineage.extractors.base import OperatorLineage
from airflow.providers.openlineage.extractors.python import PythonExtractor

from hr_pipeline.runtime.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID

_RUN_TABLE_ALIASES = ("hr.ingested_table", "hr.restored_table")


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


@cache
def blob_account(conn_id: str = BLOB_CONN_ID) -> str:
    """The storage account of the blob connection (``AccountName=`` of its connection string, its
    login, or the first label of its account URL's host)."""
    try:
        conn = _connection(conn_id)
    except Exception:  # noqa: BLE001 - lineage must never fail a task
        return "unknown"
    extra = conn.extra_dejson or {}
    match = re.search(r"AccountName=([^;]+)", str(extra.get("connection_string", "")))
    if match:
        return match.group(1)
    if conn.login:
        return conn.login
    host = str(extra.get("account_url") or conn.host or "")
    host = re.sub(r"^\w+://", "", host).split("/")[0]
    return host.split(".")[0] or "unknown"


def blob_namespace(container: str, account: str | None = None) -> str:
    """OpenLineage's namespace of an Azure Blob Storage container."""
    return f"wasbs://{container}@{account or blob_account()}.blob.core.windows.net"


@cache
def warehouse_namespace(conn_id: str = WAREHOUSE_CONN_ID) -> tuple[str, str]:
    """(namespace, prefix of a table's name) of the warehouse, in OpenLineage's naming."""
    try:
        conn = _connection(conn_id)
    except Exception:  # noqa: BLE001 - lineage must never fail a task
        return "warehouse://unknown", ""
    conn_type = (conn.conn_type or "").lower()
    if conn_type in ("postgres", "postgresql"):
        return (
            f"postgres://{conn.host or 'localhost'}:{conn.port or 5432}",
            f"{conn.schema or 'postgres'}.public.",
        )
    if conn_type == "mssql":
        return f"mssql://{conn.host or 'localhost'}:{conn.port or 1433}", f"{conn.schema or 'master'}.dbo."
    if conn_type == "sqlite":
        return f"sqlite://{conn.host}", "main."
    return f"{conn_type or 'warehouse'}://{conn.host or 'unknown'}", ""


def dataset_of(asset, table: str | None = None):
    """The OpenLineage dataset of one of the project's Assets (or None: not one of ours).

    ``table``: the run's table; a landing asset of another table is not this run's input (None).
    """
    from openlineage.client.event_v2 import Dataset

    from hr_pipeline.runtime.settings import backups_container, raw_container

    name = getattr(asset, "name", "") or ""
    kind, _, subject = name.partition(".")
    if kind == "incoming" and subject:
        if table is not None and subject != table:
            return None
        return Dataset(namespace=blob_namespace(raw_container()), name=f"incoming/{subject}")
    if kind == "warehouse" and subject:
        namespace, prefix = warehouse_namespace()
        return Dataset(namespace=namespace, name=f"{prefix}{subject}")
    if kind == "backups" and subject:
        return Dataset(namespace=blob_namespace(backups_container()), name=subject)
    return None


def _translate(asset, table: str | None):
    from airflow.sdk import AssetAlias

    if isinstance(asset, AssetAlias):
        if asset.name in _RUN_TABLE_ALIASES and table:
            from hr_pipeline.ops.assets import TABLE_ASSETS

            return dataset_of(TABLE_ASSETS.get(table), table)
        return None
    mine = dataset_of(asset, table)
    if mine is not None or str(getattr(asset, "name", "")).startswith("incoming."):
        return mine
    try:  # not one of ours: the provider's converters (file://, postgres://, ...)
        from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset

        return translate_airflow_asset(asset, None)
    except Exception:  # noqa: BLE001 - lineage must never fail a task
        return None


def _params(task_instance=None) -> dict[str, Any]:
    """The run's params (the DAG's defaults merged with the run's conf), when they can be had."""
    context = None
    if task_instance is not None and hasattr(task_instance, "get_template_context"):
        try:
            context = task_instance.get_template_context()
        except Exception:  # noqa: BLE001 - lineage must never fail a task
            context = None
    if context is None:
        try:
            from airflow.sdk import get_current_context

            context = get_current_context()
        except Exception:  # noqa: BLE001 - lineage must never fail a task
            return {}
    params = context.get("params") or {}
    try:
        return dict(params)
    except Exception:  # noqa: BLE001 - lineage must never fail a task
        return {}


def run_table(task, task_instance=None) -> str | None:
    """The table a run works on: its ``table_name`` param, for DAGs that have one."""
    if "table_name" not in (getattr(task, "params", None) or {}):
        return None
    table = _params(task_instance).get("table_name")
    if table is None:
        table = task.params.get("table_name")  # the DAG's default
    return str(table) if table else None


def task_lineage(task, task_instance=None) -> tuple[list, list]:
    """(inputs, outputs): the task's inlets and outlets (and, once it ran, the assets it attached
    to an alias) as OpenLineage datasets, deduplicated, in declaration order."""
    table = run_table(task, task_instance)
    inputs, outputs = [], []
    for declared, into in ((task.inlets or [], inputs), (task.outlets or [], outputs)):
        for asset in declared:
            if (dataset := _translate(asset, table)) is not None:
                into.append(dataset)
    if task_instance is not None:
        try:
            from airflow.providers.openlineage.utils.utils import get_runtime_outlet_assets

            for asset, _alias in get_runtime_outlet_assets(task_instance):
                if (dataset := _translate(asset, table)) is not None:
                    outputs.append(dataset)
        except Exception:  # noqa: BLE001 - lineage must never fail a task
            pass

    def unique(datasets):
        seen, kept = set(), []
        for dataset in datasets:
            if (dataset.namespace, dataset.name) not in seen:
                seen.add((dataset.namespace, dataset.name))
                kept.append(dataset)
        return kept

    return unique(inputs), unique(outputs)


class HrAssetsExtractor(PythonExtractor):
    """OpenLineage extractor of ``@task`` functions: their source code (as the provider's
    PythonExtractor) and their inlets / outlets as datasets (see the module)."""

    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        return ["_PythonDecoratedOperator", "PythonOperator"]

    def _lineage(self, task_instance=None) -> OperatorLineage:
        base = super()._execute_extraction() or OperatorLineage()
        try:
            inputs, outputs = task_lineage(self.operator, task_instance)
        except Exception as error:  # noqa: BLE001 - lineage must never fail a task
            self.log.warning("OpenLineage: the task's assets could not be translated: %s", error)
            inputs, outputs = [], []
        # Not the PythonExtractor's "unknown source" run facet: the datasets are known.
        return OperatorLineage(inputs=inputs, outputs=outputs, job_facets=base.job_facets)

    def _execute_extraction(self) -> OperatorLineage | None:
        return self._lineage()

    def extract(self) -> OperatorLineage | None:
        return self._lineage()

    def extract_on_complete(self, task_instance) -> OperatorLineage | None:
        return self._lineage(task_instance)


def read_events(path) -> list[dict]:
    """The events a file transport wrote (one JSON document per line)."""
    events = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                events.append(json.loads(line))
    return events
