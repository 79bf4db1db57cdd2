"""Blob Storage through the ``azure_blob`` connection (Azure, or Azurite locally).

A thin layer over the provider's ``WasbHook``: the pipeline's few operations with the blob layout
of the SPEC in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hr_pipeline.settings import BLOB_CONN_ID

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    size: int
    last_modified: datetime | None = None
    metadata: dict[str, str] | None = None

    @property
    def file_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def incoming_prefix(table_name: str) -> str:
    return f"incoming/{table_name}/"


def archive_name(table_name: str, day: str, file_name: str) -> str:
    return f"archive/{table_name}/{day}/{file_name}"


def rejects_name(table_name: str, day: str, file_name: str) -> str:
    stem = file_name[:-4] if file_name.lower().endswith(".csv") else file_name
    return f"rejected/{table_name}/{day}/{stem}.rejects.csv"


def rejected_file_name(table_name: str, day: str, file_name: str) -> str:
    """Where a whole unreadable file goes (kept as it arrived, beside the rejects files)."""
    return f"rejected/{table_name}/{day}/{file_name}"


class BlobStore:
    def __init__(self, conn_id: str = BLOB_CONN_ID):
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        self.hook = WasbHook(wasb_conn_id=conn_id)
        self.service = self.hook.get_conn()

    def container(self, name: str):
        return self.service.get_container_client(name)

    def ensure_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container(name).create_container()
        except ResourceExistsError:
            pass

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        """Blobs under ``prefix``, in name order, with their metadata."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            blobs = [
                BlobInfo(container, b.name, b.size, b.last_modified, dict(b.metadata or {}))
                for b in self.container(container).list_blobs(
                    name_starts_with=prefix, include=["metadata"]
                )
            ]
        except ResourceNotFoundError:
            return []
        return sorted(blobs, key=lambda blob: blob.name)

    def exists(self, container: str, name: str) -> bool:
        return self.container(container).get_blob_client(name).exists()

    def properties(self, container: str, name: str) -> BlobInfo:
        props = self.container(container).get_blob_client(name).get_blob_properties()
        return BlobInfo(container, name, props.size, props.last_modified, dict(props.metadata or {}))

    def download_to_file(self, container: str, name: str, path: Path) -> int:
        """Stream a blob to a local file; returns the bytes written."""
        downloader = self.container(container).get_blob_client(name).download_blob()
        with open(path, "wb") as handle:
            written = downloader.readinto(handle)
        log.info("Downloaded %s/%s: %d bytes", container, name, written)
        return written

    def download_bytes(self, container: str, name: str) -> bytes:
        return self.container(container).get_blob_client(name).download_blob().readall()

    def upload_file(
        self, container: str, name: str, path: Path, metadata: dict[str, str] | None = None
    ) -> None:
        self.ensure_container(container)
        with open(path, "rb") as handle:
            self.container(container).upload_blob(
                name, handle, overwrite=True, metadata=metadata, max_concurrency=2
            )
        log.info("Uploaded %s/%s: %d bytes", container, name, Path(path).stat().st_size)

    def upload_bytes(
        self, container: str, name: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> None:
        self.ensure_container(container)
        self.container(container).upload_blob(name, data, overwrite=True, metadata=metadata)

    def move(self, container: str, source: str, destination: str) -> None:
        """Copy then delete: a blob is never lost if the move stops half way."""
        source_client = self.container(container).get_blob_client(source)
        destination_client = self.container(container).get_blob_client(destination)
        copy = destination_client.start_copy_from_url(source_client.url, requires_sync=True)
        if copy.get("copy_status") not in (None, "success"):
            raise RuntimeError(f"Copy of {source} to {destination} did not complete: {copy}")
        source_client.delete_blob()
        log.info("Moved %s/%s to %s", container, source, destination)

    def delete(self, container: str, name: str) -> None:
        self.container(container).get_blob_client(name).delete_blob()
