"""Ingest on landing: an event trigger that notices files landing under ``incoming/<table>/``.

``IncomingFilesTrigger`` runs in the triggerer as an ``AssetWatcher`` of the table's landing asset
(``assets.LANDED_FILES``): it lists the folder every ``poll_seconds`` and fires one event for the
files that landed since it last fired (all of them: files landing together make one event). For
each file it reported it writes a marker, ``processing/landing/<table>/<path>``, holding the
file's ETag: a restarted trigger does not report it again, a file uploaded again under the same
name is reported anew, and the file itself is never touched (a run may be claiming it).
The ``ingest_on_landing`` DAG turns each event into a run of ``ingest_table`` for that table.

Switched off with ``HR_INGEST_ON_LANDING=false``: the landing assets then have no watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from hr_pipeline.runtime.settings import BLOB_CONN_ID
from hr_pipeline.storage import layout

SOURCE_ETAG_KEY = "hr_source_etag"


def marker_name(source: str) -> str:
    """The marker of a reported file ``incoming/<table>/<path>``, within Azure's limit on a name
    as the layout's names are (``layout.fitted``), and in its table's folder."""
    table, _, path = source[len("incoming/") :].partition("/")
    return layout.fitted(f"processing/landing/{table}/", path)


def is_reported(source_etag: str | None, marker_metadata: dict | None) -> bool:
    return bool(source_etag) and (marker_metadata or {}).get(SOURCE_ETAG_KEY) == str(source_etag).strip('"')


class IncomingFilesTrigger(BaseEventTrigger):
    """Fires when files land under ``incoming/<table>/`` of ``container`` (see the module)."""

    def __init__(self, table: str, container: str, conn_id: str = BLOB_CONN_ID, poll_seconds: float = 10.0):
        super().__init__()
        self.table = table
        self.container = container
        self.conn_id = conn_id
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "container": self.container,
                "conn_id": self.conn_id,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbAsyncHook

        hook = WasbAsyncHook(wasb_conn_id=self.conn_id)
        client = await hook.get_async_conn()
        try:
            while True:
                try:
                    landed = await self._report_new_files(client.get_container_client(self.container))
                except Exception as error:  # noqa: BLE001 - storage hiccup: say so, poll again
                    self.log.warning("Listing %s/incoming/%s/ failed: %s", self.container, self.table, error)
                    landed = []
                if landed:
                    self.log.info("%d file(s) landed for %s: %s", len(landed), self.table, ", ".join(landed))
                    yield TriggerEvent({"table": self.table, "files": landed})
                    return
                await asyncio.sleep(self.poll_seconds)
        finally:
            await client.close()

    async def _report_new_files(self, container) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            markers = {
                blob.name: dict(blob.metadata or {})
                async for blob in container.list_blobs(
                    name_starts_with=marker_name(f"incoming/{self.table}/"), include=["metadata"]
                )
            }
            waiting = [
                blob async for blob in container.list_blobs(name_starts_with=f"incoming/{self.table}/")
            ]
        except ResourceNotFoundError:  # no container yet
            return []
        landed = []
        for blob in waiting:
            if blob.name.endswith("/") or is_reported(blob.etag, markers.get(marker_name(blob.name))):
                continue
            await container.upload_blob(
                marker_name(blob.name),
                b"",
                overwrite=True,
                metadata={SOURCE_ETAG_KEY: str(blob.etag).strip('"')},
            )
            landed.append(blob.name)
        return sorted(landed)


def tables_of_events(triggering_asset_events, table_names) -> list[str]:
    """The tables whose landing assets fired, in the contract's order."""
    landed = {
        getattr(asset, "name", str(asset)).removeprefix("incoming.")
        for asset in (triggering_asset_events or {})
    }
    return [table for table in table_names if table in landed]


def _landed_files(events) -> list[str]:
    files = []
    for event in events or []:
        extra = getattr(event, "extra", None) or {}
        files += (extra.get("payload") or extra).get("files") or []
    return files


def ingest_confs(triggering_asset_events, table_names) -> list[dict]:
    """One ``ingest_table`` conf per table whose landing asset fired, in the contract's order: the
    run does not wait (its files landed: if they are gone, another run took them) and knows which
    files started it."""
    events = {
        getattr(asset, "name", str(asset)).removeprefix("incoming."): found
        for asset, found in (triggering_asset_events or {}).items()
    }
    return [
        {"table_name": table, "wait_minutes": 0, "landed_files": _landed_files(events.get(table))}
        for table in tables_of_events(triggering_asset_events, table_names)
    ]
