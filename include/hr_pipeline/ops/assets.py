"""The warehouse tables as Airflow Assets, declared once and imported by every DAG.

Producers (ingest_table, restore_table) name their outlet through an ``AssetAlias``: one task
serves every table, and attaches its asset event to the one table it changed (with what changed in
the event's ``extra``); publish_metrics is scheduled on the tables' assets.

Two more kinds of asset, which no DAG is scheduled on, record what the other runs produced, with
the row counts in each event's ``extra``:

- ``backups.<table>``: a backup_tables run's new backup of the table (through the alias
  ``hr.backed_up_table``; extra: rows, blob, bytes, sha256, instant). Distinct from the table's
  own asset: a backup does not change the table, and must not trigger publish_metrics.
- ``warehouse.<metric table>``: a publish_metrics run's published tables (extra: rows).
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

from hr_pipeline.contract.tables import TABLE_NAMES
from hr_pipeline.metrics import METRIC_NAMES


def _table_asset(table_name: str) -> Asset:
    return Asset(name=f"warehouse.{table_name}", uri=f"warehouse://hr/{table_name}", group="hr")


TABLE_ASSETS: dict[str, Asset] = {name: _table_asset(name) for name in TABLE_NAMES}

# The table an ingest_table run loaded rows into, and the table a restore_table run replaced.
INGESTED_TABLE = AssetAlias(name="hr.ingested_table", group="hr")
RESTORED_TABLE = AssetAlias(name="hr.restored_table", group="hr")

# A backup_tables run's new backup of a table, attached through the alias to BACKUP_ASSETS[table].
BACKED_UP_TABLE = AssetAlias(name="hr.backed_up_table", group="hr")
BACKUP_ASSETS: dict[str, Asset] = {
    name: Asset(name=f"backups.{name}", uri=f"hr-backups://hr/{name}", group="hr") for name in TABLE_NAMES
}

# The metric tables publish_metrics publishes (one event each per run, with its row count).
METRIC_ASSETS: dict[str, Asset] = {name: _table_asset(name) for name in METRIC_NAMES}


def _landing_asset(table_name: str) -> Asset:
    """Files landing under incoming/<table>/, watched in the triggerer unless switched off."""
    from airflow.sdk import AssetWatcher

    from hr_pipeline.runtime.settings import ingest_on_landing_enabled, landing_poll_seconds, raw_container
    from hr_pipeline.storage.landing import IncomingFilesTrigger

    watchers = []
    if ingest_on_landing_enabled():
        trigger = IncomingFilesTrigger(table_name, raw_container(), poll_seconds=landing_poll_seconds())
        watchers.append(AssetWatcher(name=f"incoming_{table_name}", trigger=trigger))
    return Asset(
        name=f"incoming.{table_name}",
        uri=f"hr-landing://incoming/{table_name}",
        group="hr",
        watchers=watchers,
    )


# Files that landed for each table (event-driven: see hr_pipeline.storage.landing).
LANDED_FILES: dict[str, Asset] = {name: _landing_asset(name) for name in TABLE_NAMES}
