"""Names of connections and containers, read from the environment at call time.

Read lazily (functions, not module constants) so a test or a worker can change the environment
after import and still be obeyed.
"""

from __future__ import annotations

import os

BLOB_CONN_ID = "azure_blob"
WAREHOUSE_CONN_ID = "warehouse"

DEFAULT_BATCH_SIZE = 1000
# Rows read and validated together. Independent of the load batch size: validation cost per
# chunk is dominated by fixed overhead, so chunks are larger than load transactions.
DEFAULT_READ_CHUNK_ROWS = 50_000


def ingest_wait_timeout_seconds() -> int:
    """How long ingest_table waits for a file before failing (default 6 hours)."""
    return int(os.environ.get("HR_INGEST_WAIT_TIMEOUT_SECONDS", str(6 * 3600)))


def raw_container() -> str:
    return os.environ.get("AZURE_BLOB_CONTAINER_RAW_DATA", "raw-data")


def backups_container() -> str:
    return os.environ.get("AZURE_BLOB_CONTAINER_BACKUPS", "backups")


def backup_retention_days() -> int:
    return int(os.environ.get("HR_BACKUP_RETENTION_DAYS", "30"))
