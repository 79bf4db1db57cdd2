"""The warehouse tables as Airflow Assets, declared once and imported by every DAG.

Producers (ingest_table, restore_table) list them as outlets; publish_metrics is scheduled on them.
"""

from __future__ import annotations

from airflow.sdk import Asset

from hr_pipeline.contracts import TABLE_NAMES


def _table_asset(table_name: str) -> Asset:
    return Asset(name=f"warehouse.{table_name}", uri=f"warehouse://hr/{table_name}", group="hr")


TABLE_ASSETS: dict[str, Asset] = {name: _table_asset(name) for name in TABLE_NAMES}
