"""Create the pipeline's blob containers (docker-compose's one-shot ``hr-storage-init`` service).

Uses the pipeline's own BlobStore on the ``azure_blob`` connection, and the container names of
``AZURE_BLOB_CONTAINER_RAW_DATA`` / ``AZURE_BLOB_CONTAINER_BACKUPS`` (defaults raw-data, backups).
"""

from __future__ import annotations

from hr_pipeline.runtime import settings
from hr_pipeline.storage.blob_store import BlobStore


def main() -> int:
    store = BlobStore(settings.BLOB_CONN_ID)
    for container in (settings.raw_container(), settings.backups_container()):
        store.ensure_container(container)
        print(f"blob container ready: {container}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
