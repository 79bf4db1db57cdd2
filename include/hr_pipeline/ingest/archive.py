"""The archive task: each file to ``archive/`` (or set aside whole in ``rejected/``), its rejects to ``rejected/``, one ledger row per file, from a manifest any later run can finish."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass

from hr_pipeline.contract.tables import TableContract, get_contract
from hr_pipeline.ingest.run import (
    FileValidation,
    IngestError,
    ingest_lock,
    load_rejects_name,
    loads_by_source,
)
from hr_pipeline.runtime.settings import (
    raw_container,
)
from hr_pipeline.storage import layout
from hr_pipeline.storage.blob_store import BlobStore
from hr_pipeline.storage.claims import (
    IngestLock,
)
from hr_pipeline.warehouse import ledger
from hr_pipeline.warehouse.facade import Warehouse

log = logging.getLogger(__name__)


def archive_ingested(
    table: str,
    validations: list[dict],
    day: str,
    store: BlobStore | None = None,
    run_id: str | None = None,
    loads: list[dict] | None = None,
    warehouse: Warehouse | None = None,
) -> list[str]:
    """Move each file to archive/ and its rejects to rejected/, record it in the ingest ledger,
    then release the table's ingest lock; returns one summary line per file.

    A file that was not loaded (unreadable, its rejected share above the run's limit, or its
    rows refused by the warehouse) goes whole to rejected/ with a ``.reason.txt``, beside its
    rejects file. Fenced (only while the run holds the ingest lock) and safe to repeat from any
    point: a retry, or the run that takes the lock over, finishes it from its manifest.
    """
    if not validations:
        return []
    contract = get_contract(table)
    store = store or BlobStore()
    warehouse = warehouse or Warehouse()
    lock = ingest_lock(contract, run_id or validations[0]["run_id"], store, warehouse)
    manifest = {
        "table": contract.name,
        "run_id": validations[0]["run_id"],
        "day": day,
        "validations": validations,
        "loads": loads or [],
    }
    with warehouse.table_locks(writers=[contract.name]):
        lock.ensure_held()
        summary = _archive_run(contract, store, warehouse, manifest)
        lock.release()
    log.info("Ingest of %s, per file:\n%s", contract.name, "\n".join(f"  {line}" for line in summary))
    return summary


def _archive_run(
    contract: TableContract, store: BlobStore, warehouse: Warehouse, manifest: dict
) -> list[str]:
    """Archive one run's files of ``contract``'s table as the manifest says: the manifest first
    (what a take-over finishes), then each file and its rejects, the ledger rows, and the
    manifest removed."""
    table, run_id = contract.name, manifest["run_id"]
    container = raw_container()
    manifest_name = layout.archive_manifest_name(table, run_id)
    if not store.exists(container, manifest_name):
        store.upload_bytes(container, manifest_name, json.dumps(manifest).encode())
        log.info("%s: archive manifest of run %s written (%s)", table, run_id, manifest_name)
    loads = loads_by_source(manifest["loads"])
    summary, ledger_rows = [], []
    for item in map(lambda d: FileValidation(**d), manifest["validations"]):
        line, ledger_row = _archive_file(store, contract, manifest["day"], item, loads.get(item.source, {}))
        summary.append(line)
        ledger_rows.append(ledger_row)
    ledger.record(warehouse, ledger_rows)
    log.info("%s: %d ledger row(s) of run %s written", table, len(ledger_rows), run_id)
    store.delete(container, manifest_name)
    log.info("%s: archive of run %s complete", table, run_id)
    return summary


def finish_archive(
    contract: TableContract, manifest: dict, store: BlobStore, warehouse: Warehouse, lock: IngestLock
) -> None:
    """An ended run's archive of ``contract``'s table (the manifest found under its
    ``processing/`` folder), finished by the run that took the ingest lock over (fenced)."""
    with warehouse.table_locks(writers=[contract.name]):
        lock.ensure_held()
        for line in _archive_run(contract, store, warehouse, manifest):
            log.warning("Archived for run %s, which ended part way: %s", manifest["run_id"], line)


@dataclass(frozen=True)
class _Outcome:
    """What became of one file, as the ingest ledger records it."""

    status: str
    loaded: int
    rejected: int
    set_aside: str | None  # why the file went whole to rejected/ instead of being loaded


def _outcome(item: FileValidation, load: dict, rejected_at_load: int) -> _Outcome:
    if item.unreadable_reason:
        return _Outcome("unreadable", 0, 0, item.unreadable_reason)
    if item.over_limit_reason:
        return _Outcome("over_reject_limit", 0, item.rejected, item.over_limit_reason)
    rejected = item.rejected + rejected_at_load
    if load.get("error"):
        loaded = load.get("loaded", 0)
        reason = (
            f"the warehouse refused its rows: {load['error']}; {loaded} of its "
            f"{item.valid} valid rows were loaded before that"
        )
        return _Outcome("refused_by_warehouse", loaded, rejected, reason)
    return _Outcome("loaded", item.valid - rejected_at_load, rejected, None)


def _archive_file(
    store: BlobStore, contract: TableContract, day: str, item: FileValidation, load: dict
) -> tuple[str, ledger.LedgerRow]:
    """Archive one file as ``archive_ingested`` says: its summary line and ledger row. Each step
    is done once: a repeat finds it done (moved, written) and goes on."""
    table = contract.name
    container = raw_container()
    late_rejects = _bytes_if_any(store, load_rejects_name(item))
    # Rejected at load: as the load said, or (a caller that kept no result) as its file says.
    outcome = _outcome(item, load, load.get("rejected") or _csv_records(late_rejects))
    if outcome.set_aside:
        destination = layout.unreadable_file_name(table, day, item.run_id, item.source)
    else:
        destination = item.archive_blob
    if store.exists(container, item.claimed_blob):  # not moved yet by an earlier try
        store.move(container, item.claimed_blob, destination)
        log.info("%s: moved to %s", item.source, destination)
    if outcome.set_aside:
        reason_name = layout.set_aside_reason_name(table, day, item.run_id, item.source)
        store.upload_bytes(container, reason_name, f"{item.source}: {outcome.set_aside}\n".encode())
        log.info("%s: why it was set aside written to %s", item.source, reason_name)
    _move_rejects(store, item, late_rejects)
    # The load's rejects first: while they exist, a repeat rebuilds the whole rejects file.
    for leftover in (load_rejects_name(item), item.rejects_blob, item.valid_blob):
        if store.exists(container, leftover):
            store.delete(container, leftover)
    log.info("%s: hand-over files removed", item.source)
    line = _summary_line(item, outcome, destination)
    log.info(line)
    return line, _ledger_row(contract, item, outcome, destination)


def _bytes_if_any(store: BlobStore, name: str) -> bytes:
    """The blob's bytes; none when it does not exist."""
    container = raw_container()
    return store.download_bytes(container, name) if store.exists(container, name) else b""


def _move_rejects(store: BlobStore, item: FileValidation, late_rejects: bytes) -> None:
    """The file's rejects to rejected/: those of validation, then those of the load, as one file,
    written whole once (a repeat finds it there and leaves it)."""
    container = raw_container()
    if not (item.rejected or late_rejects) or store.exists(container, item.rejects_destination):
        return
    if not late_rejects and store.exists(container, item.rejects_blob):
        store.move(container, item.rejects_blob, item.rejects_destination)
    elif late_rejects:
        head = _bytes_if_any(store, item.rejects_blob)
        if item.rejected and not head:
            raise IngestError(f"{item.source}: its rejects file {item.rejects_blob} is missing")
        store.upload_bytes(container, item.rejects_destination, head + late_rejects)
    else:
        raise IngestError(
            f"{item.source}: {item.rejected} rows were rejected, but neither {item.rejects_blob} "
            f"nor {item.rejects_destination} exists"
        )
    log.info("%s: rejects moved to %s", item.source, item.rejects_destination)


def _summary_line(item: FileValidation, outcome: _Outcome, destination: str) -> str:
    if outcome.set_aside:
        line = (
            f"{item.source}: NOT LOADED ({outcome.set_aside}); set aside whole in "
            f"{raw_container()}/{destination}"
        )
    else:
        line = (
            f"{item.source}: {item.rows} rows, {outcome.loaded} loaded, {outcome.rejected} rejected"
            f" -> {destination}"
        )
    if outcome.rejected:
        line += f", rejects in {item.rejects_destination}"
    return line


def _ledger_row(
    contract: TableContract, item: FileValidation, outcome: _Outcome, archived_as: str
) -> ledger.LedgerRow:
    return ledger.LedgerRow(
        run_id=item.run_id,
        file=item.source,
        table_name=contract.name,
        status=outcome.status,
        sha256=item.sha256,
        bytes=item.bytes,
        rows=item.rows,
        loaded=outcome.loaded,
        rejected=outcome.rejected,
        archived_as=archived_as,
        rejects_file=item.rejects_destination if outcome.rejected else None,
        same_as_run=item.same_as_run,
        detail=ledger.fit_text(outcome.set_aside, "detail"),
    )


def _csv_records(data: bytes) -> int:
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) if data else 0


def failed_files_message(validations: list[dict], loads: list[dict] | None = None) -> str | None:
    """Why the run must fail once every file is archived: files that could not be read, and
    files whose load the warehouse refused."""
    loads = loads_by_source(loads)
    reasons = [v["unreadable_reason"] for v in validations if v.get("unreadable_reason")]
    reasons += [
        f"{v['source']}: not loaded: {v['over_limit_reason']}"
        for v in validations
        if v.get("over_limit_reason")
    ]
    reasons += [
        f"{source}: the warehouse refused its rows ({load['error']}); set aside whole in rejected/"
        for source, load in loads.items()
        if load.get("error")
    ]
    if not reasons:
        return None
    return f"{len(reasons)} file(s) were not ingested: " + " | ".join(reasons)
