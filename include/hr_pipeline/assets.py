"""The warehouse tables as Airflow Assets, declared once and imported by every DAG.

Producers (ingest_table, restore_table) name their outlet through an ``AssetAlias``: one task
serves every table, and attaches its asset event to the one table it changed (with what changed in
the event's ``extra``); publish_metrics is scheduled on the tables' assets.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

from hr_pipeline.contracts import TABLE_NAMES


def _table_asset(table_name: str) -> Asset:
    return Asset(name=f"warehouse.{table_name}", uri=f"warehouse://hr/{table_name}", group="hr")


TABLE_ASSETS: dict[str, Asset] = {name: _table_asset(name) for name in TABLE_NAMES}

# The table an ingest_table run loaded rows into, and the table a restore_table run replaced.
INGESTED_TABLE = AssetAlias(name="hr.ingested_table", group="hr")
RESTORED_TABLE = AssetAlias(name="hr.restored_table", group="hr")
