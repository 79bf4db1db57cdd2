"""Names of connections and containers, read from the environment at call time.

Read lazily (functions, not module constants) so a test or a worker can change the environment
after import and still be obeyed.
"""

from __future__ import annotations

import os

BLOB_CONN_ID = "azure_blob"
WAREHOUSE_CONN_ID = "warehouse"

DEFAULT_BATCH_SIZE = 1000
# The share of a file's rows that may be rejected before the file is refused whole (the real
# extracts reject 3.5%).
DEFAULT_MAX_REJECT_RATIO = 0.10
# How long a run started with nothing waiting waits for a file (ingest_table's wait_minutes).
DEFAULT_WAIT_MINUTES = 10


def validation_chunk_rows() -> int:
    """Rows read and validated together (HR_VALIDATION_CHUNK_ROWS). Independent of the load
    batch size: Great Expectations costs a fixed ~0.03 s per run on top of its cost per row, so
    chunks are much larger than load transactions; the validate task's peak memory grows with
    them (two chunks are in hand, one read ahead), and this size keeps it under 400 MB
    (benchmarks/RESULTS.md)."""
    return max(1, int(os.environ.get("HR_VALIDATION_CHUNK_ROWS", "100000")))


def load_connections() -> int:
    """Connections a PostgreSQL load writes through at once (HR_LOAD_CONNECTIONS, default 2)."""
    return max(1, int(os.environ.get("HR_LOAD_CONNECTIONS", "2")))


def ingest_lock_timeout_seconds() -> int:
    """How long a run of ingest_table waits for another run of the same table to finish
    (HR_INGEST_LOCK_TIMEOUT_SECONDS, default 6 hours)."""
    return int(os.environ.get("HR_INGEST_LOCK_TIMEOUT_SECONDS", str(6 * 3600)))


def reference_wait_seconds() -> int:
    """How long an ingest of hired_employees waits for ingests of departments and jobs in
    progress (HR_REFERENCE_WAIT_SECONDS, default 15 minutes)."""
    return int(os.environ.get("HR_REFERENCE_WAIT_SECONDS", "900"))


def reference_poll_seconds() -> float:
    """How often that wait looks again (HR_REFERENCE_POLL_SECONDS, default 2)."""
    return float(os.environ.get("HR_REFERENCE_POLL_SECONDS", "2"))


def raw_container() -> str:
    return os.environ.get("AZURE_BLOB_CONTAINER_RAW_DATA", "raw-data")


def backups_container() -> str:
    return os.environ.get("AZURE_BLOB_CONTAINER_BACKUPS", "backups")


def backup_retention_days() -> int:
    return int(os.environ.get("HR_BACKUP_RETENTION_DAYS", "30"))


def read_block_bytes() -> int:
    """The block Arrow's CSV reader parses at a time (HR_READ_BLOCK_BYTES, default 256 KiB). Its
    streaming reader holds memory in proportion to it (benchmarks/RESULTS.md). A record longer
    than a block is read by the plain reader instead (``reader.RecordTooLongForBlocks``); tests
    set small blocks to cross them."""
    return max(1024, int(os.environ.get("HR_READ_BLOCK_BYTES", str(1 << 18))))


def ingest_on_landing_enabled() -> bool:
    """Whether ``ingest_on_landing`` watches ``incoming/`` (HR_INGEST_ON_LANDING, default true)."""
    return os.environ.get("HR_INGEST_ON_LANDING", "true").strip().lower() not in ("0", "false", "no", "off")


def landing_poll_seconds() -> float:
    """How often the landing trigger lists ``incoming/`` (HR_LANDING_POLL_SECONDS, default 10)."""
    return float(os.environ.get("HR_LANDING_POLL_SECONDS", "10"))


MAX_BODY_BYTES_VARIABLE = "HR_API_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # the largest body is a restore's: well under 1 KiB


def max_body_bytes() -> int:
    """The ``/hr`` API's request body limit: ``HR_API_MAX_BODY_BYTES`` (a positive integer), else 1 MiB."""
    raw = os.environ.get(MAX_BODY_BYTES_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_BODY_BYTES_VARIABLE}={raw!r}: expected a positive number of bytes")
    return value


def local_state_dir_name() -> str | None:
    """Where the local tools keep Azurite's data, the stack's state and the demo (HR_LOCAL_DIR;
    unset: ``.local`` in the checkout)."""
    return os.environ.get("HR_LOCAL_DIR") or None
