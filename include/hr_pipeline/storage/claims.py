"""Which run of ``ingest_table`` owns a table's waiting files, so that runs cannot corrupt each other.

Runs of different tables never wait on each other. Runs of one table take turns: from the claim of
its files to their archiving, one run holds the table's **ingest lock**, a blob
(``storage.layout.lock_name``) created only if absent and naming the run. So a file is claimed by one
run only, and a table's files are loaded in the order they were claimed, whichever run claims them.

- **Claiming** moves each waiting file, in name order, from ``incoming/`` into the run's own
  folder (``processing/<table>/<run>/claimed/<path>``), pinned to the version that was listed
  (its ETag): the run validates, loads and archives exactly that version. A file uploaded again
  under the same name while a run is in flight stays in ``incoming/`` for the next run.
- **Fencing.** The lock changes hands only inside the warehouse's *writer lock* of the table
  (``Warehouse.table_locks(writers=...)``), and every step that commits (the load, the archive and
  its ledger rows) first checks, holding that writer lock, that the ingest lock still names its
  run (``IngestLock.ensure_held``). A run that lost the lock commits nothing more, and two loads
  of one table never write at the same time.
- **A run that ended without releasing the lock** (it failed, or its worker died) is taken over
  by the next run of the table, and only once Airflow says that run has ended: a holder whose
  state cannot be read counts as in progress (the next run waits, then fails saying why).
- **Leftovers are adopted.** The run holding the lock adopts every other run's folder of the
  table (``adopt_leftovers``): an archive that an ended run began is finished from its manifest
  (its files archived, its rejects kept, its ledger rows written), and files it claimed but did
  not archive are ingested by this run, in their claim order. Nothing a run claimed is lost.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone

from hr_pipeline.storage import layout
from hr_pipeline.storage.blob_store import (
    BlobNotFoundError,
    BlobSourceChangedError,
    BlobSourceMissingError,
    BlobStore,
)
from hr_pipeline.storage.landing import marker_name

log = logging.getLogger(__name__)

# Metadata of a claimed file: its name under incoming/ (base64 of UTF-8: Azure's metadata is
# ASCII, a file name need not be), its place in the claim order, and the run that claimed it.
SOURCE_KEY = "hr_source_b64"
ORDER_KEY = "hr_claim_order"
RUN_KEY = "hr_run_id"

# Whether another run has ended; raises when that cannot be told (see hr_pipeline.ops.run_states).
RunHasEnded = Callable[[str], bool]


class IngestLockTimeout(RuntimeError):
    """The table's ingest lock stayed with another run in progress (or one whose state could
    not be read) for too long."""


class LockLostError(RuntimeError):
    """This run no longer holds the table's ingest lock: it must not commit anything more."""


@dataclass(frozen=True)
class Claim:
    """A file this run owns: its original name under ``incoming/`` and where its bytes are."""

    source: str
    blob: str


def encode_name(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8", "surrogatepass")).decode("ascii")


def decode_name(value: str) -> str:
    return base64.urlsafe_b64decode(value.encode("ascii")).decode("utf-8", "surrogatepass")


def _never_ended(run_id: str) -> bool:
    return False


def _no_fence() -> AbstractContextManager:
    return contextlib.nullcontext()


class IngestLock:
    """The ingest lock of one table, taken by one run (re-entrant for that run's retries).

    ``run_has_ended`` tells whether another run has ended (Airflow knows; without it, every
    holder is in progress). ``fence`` returns the warehouse's writer lock of the table, inside
    which the lock changes hands."""

    def __init__(
        self,
        store: BlobStore,
        container: str,
        table: str,
        run_id: str,
        run_has_ended: RunHasEnded | None = None,
        fence: Callable[[], AbstractContextManager] | None = None,
    ):
        self.store = store
        self.container = container
        self.table = table
        self.run_id = run_id
        self.run_has_ended = run_has_ended or _never_ended
        self.fence = fence or _no_fence
        self.name = layout.lock_name(table)

    def holder(self) -> tuple[str, str] | None:
        """(run id, etag) of the run holding the lock, or None."""
        try:
            blob = self.store.properties(self.container, self.name)
        except BlobNotFoundError:
            return None
        return (blob.metadata or {}).get(RUN_KEY, ""), blob.etag

    def acquire(self, timeout_seconds: float, poll_seconds: float = 5.0) -> None:
        """Wait for the lock and take it: when it is free, or held by a run that has ended."""
        deadline = time.monotonic() + timeout_seconds
        started = time.monotonic()
        said: set[str] = set()
        unknown = ""
        while True:
            held = self.holder()
            if held is None and self._take(None):
                break
            if held is not None:
                holder_run, etag = held
                if holder_run == self.run_id:  # a retry of this run's own task
                    return
                ended, unknown = self._has_ended(holder_run, said)
                if ended and self._take((holder_run, etag)):
                    break
                if not ended and holder_run not in said:
                    log.info(
                        "Waiting for run %s, which is ingesting %s (the table's ingest lock, %s/%s): "
                        "runs of one table take turns",
                        holder_run,
                        self.table,
                        self.container,
                        self.name,
                    )
                    said.add(holder_run)
                if not ended and time.monotonic() > deadline:
                    raise IngestLockTimeout(self._timeout_message(holder_run, timeout_seconds, unknown))
                if not ended:
                    time.sleep(poll_seconds)
        if said:
            log.info(
                "Took the ingest lock of %s after waiting %.0f s", self.table, time.monotonic() - started
            )

    def _has_ended(self, holder_run: str, said: set[str]) -> tuple[bool, str]:
        """(whether the holder has ended, why its state is unknown or "")."""
        try:
            return bool(self.run_has_ended(holder_run)), ""
        except Exception as error:  # noqa: BLE001 - unknown is in progress, said and retried
            why = f"{type(error).__name__}: {error}"
            if f"unknown:{holder_run}" not in said:
                log.warning(
                    "Cannot tell whether run %s, holding the ingest lock of %s, has ended (%s): "
                    "waiting as for a run in progress",
                    holder_run,
                    self.table,
                    why,
                )
                said.add(f"unknown:{holder_run}")
            return False, why

    def _timeout_message(self, holder_run: str, timeout_seconds: float, unknown: str) -> str:
        if unknown:
            return (
                f"{self.table}: run {holder_run} holds the ingest lock ({self.container}/{self.name}) "
                f"and its state could not be read for {timeout_seconds:.0f} s ({unknown}); "
                "this run did not take the lock over. Once Airflow answers again, trigger the "
                "table again; if that run is stuck, mark it failed first"
            )
        return (
            f"{self.table}: run {holder_run} still holds the ingest lock ({self.container}/{self.name}) "
            f"after {timeout_seconds:.0f} s; if that run is stuck, stop it (mark it failed) and "
            "this table's next run takes over"
        )

    def _take(self, ended: tuple[str, str] | None) -> bool:
        """Create the lock (``ended`` None) or replace an ended run's, inside the fence."""
        metadata = {RUN_KEY: self.run_id, "acquired_at": datetime.now(timezone.utc).isoformat()}
        with self.fence():
            if ended is None:
                return self.store.create_if_absent(self.container, self.name, self.run_id.encode(), metadata)
            holder_run, etag = ended
            if not self.store.replace_if_unchanged(
                self.container, self.name, self.run_id.encode(), etag, metadata
            ):
                return False
        log.warning(
            "The ingest lock of %s was held by run %s, which has ended without releasing it: "
            "this run takes it over, with what that run left",
            self.table,
            holder_run,
        )
        return True

    def ensure_held(self) -> None:
        """Raise ``LockLostError`` unless this run holds the lock. Call it holding the fence."""
        held = self.holder()
        if held is None or held[0] != self.run_id:
            raise LockLostError(
                f"{self.table}: run {self.run_id} no longer holds the ingest lock "
                f"({self.container}/{self.name}: "
                + (f"held by run {held[0]}" if held else "released")
                + "); another run took over this run's files, so this run commits nothing more"
            )

    def release(self) -> None:
        """Give the lock back, if this run holds it."""
        held = self.holder()
        if held is not None and held[0] == self.run_id:
            self.store.delete_if_unchanged(self.container, self.name, held[1])
            log.info("Released the ingest lock of %s", self.table)


def adopt_leftovers(
    store: BlobStore,
    container: str,
    table: str,
    run_id: str,
    finish_archive: Callable[[dict], None],
) -> None:
    """What other runs of the table left under ``processing/<table>/``, adopted by this run,
    which holds the ingest lock (so no other run can be working there): an archive that was
    begun is finished (``finish_archive`` gets its manifest), files claimed and not archived move
    into this run's claims with their claim order, and the rest (hand-over files made again from
    the claimed files) is deleted. Safe to repeat."""
    mine = layout.processing_prefix(table, run_id)
    root = layout.processing_root(table)
    folders: dict[str, list] = {}
    for blob in store.list(container, root):
        folder = root + blob.name[len(root) :].split("/", 1)[0] + "/"
        if folder != mine:
            folders.setdefault(folder, []).append(blob)
    for folder, blobs in folders.items():
        manifest = folder + "archive-manifest.json"
        if any(blob.name == manifest for blob in blobs):
            log.warning("%s: finishing the archive that the run of %s began", table, folder)
            finish_archive(json.loads(store.download_bytes(container, manifest)))
            blobs = store.list(container, folder)
        for blob in blobs:
            if blob.name.startswith(folder + "claimed/"):
                _adopt_claim(store, container, table, run_id, folder, blob)
        for leftover in store.list(container, folder):
            store.delete(container, leftover.name)


def _adopt_claim(store: BlobStore, container: str, table: str, run_id: str, folder: str, blob) -> None:
    metadata = blob.metadata or {}
    source = source_of(table, blob.name, metadata, folder + "claimed/")
    destination = layout.claimed_name(table, run_id, source)
    store.move(container, blob.name, destination)
    store.set_metadata(
        container,
        destination,
        {SOURCE_KEY: encode_name(source), ORDER_KEY: metadata.get(ORDER_KEY, "0"), RUN_KEY: run_id},
    )
    log.warning("%s, claimed by the run of %s that ended, is ingested by this run", source, folder)


def source_of(table: str, claimed: str, metadata: dict, claimed_folder: str) -> str:
    """The name under incoming/ of a claimed file: from its metadata, else from its path."""
    if metadata.get(SOURCE_KEY):
        return decode_name(metadata[SOURCE_KEY])
    return layout.incoming_prefix(table) + claimed[len(claimed_folder) :]


def claim_files(store: BlobStore, container: str, table: str, run_id: str) -> list[Claim]:
    """The files this run ingests, in the order they must be loaded: those it claimed or adopted
    earlier, then the files waiting now. Call it holding the table's ingest lock."""
    mine = layout.claimed_prefix(table, run_id)
    claims = {blob.name: blob for blob in store.list(container, mine)}
    waiting = [b for b in store.list(container, layout.incoming_prefix(table)) if not b.name.endswith("/")]
    for count, blob in enumerate(waiting):
        destination = layout.claimed_name(table, run_id, blob.name)
        if destination in claims:
            # A file with this name was claimed earlier in this run and uploaded again since: it
            # is the next run's.
            continue
        try:
            store.move(container, blob.name, destination, if_match_etag=blob.etag)
        except (BlobSourceChangedError, BlobSourceMissingError) as error:
            if not store.exists(container, destination):
                log.info("Not claiming %s: %s", blob.name, error)
                continue
            log.info(
                "%s: claimed the version that was listed; the newer upload stays for the next run (%s)",
                blob.name,
                error,
            )
        # The claim instant orders files across runs (an adopted file keeps its place).
        order = f"{time.time_ns():020d}.{count:06d}"
        store.set_metadata(
            container, destination, {SOURCE_KEY: encode_name(blob.name), ORDER_KEY: order, RUN_KEY: run_id}
        )
        if store.exists(container, marker_name(blob.name)):  # the landing trigger's: done with
            store.delete(container, marker_name(blob.name))
        claims[destination] = store.properties(container, destination)
    ordered = sorted(claims.values(), key=lambda b: ((b.metadata or {}).get(ORDER_KEY, ""), b.name))
    return [Claim(source_of(table, b.name, b.metadata or {}, mine), b.name) for b in ordered]


def stranded_claims(store: BlobStore, container: str, table: str, run_has_ended: RunHasEnded) -> list[str]:
    """Files claimed by runs that can no longer ingest them (the next run adopts them): those
    in any run's folder while no run holds the lock, in the folders of runs other than the lock's
    holder, and the holder's own once it has ended. A holder whose state is unknown keeps its own."""
    lock = IngestLock(store, container, table, "", run_has_ended)
    held = lock.holder()
    holder_folder = layout.processing_prefix(table, held[0]) if held else None
    if held is not None:
        try:
            if run_has_ended(held[0]):
                holder_folder = None
        except Exception as error:  # noqa: BLE001 - unknown is in progress, said and retried
            log.warning("Cannot tell whether run %s has ended (%s)", held[0], error)
    root = layout.processing_root(table)
    return [
        blob.name
        for blob in store.list(container, root)
        if "/claimed/" in blob.name[len(root) :] or blob.name.endswith("/archive-manifest.json")
        if not (holder_folder and blob.name.startswith(holder_folder))
    ]


def wait_for_referenced_ingests(
    store: BlobStore,
    container: str,
    table: str,
    referenced: list[str],
    timeout_seconds: float,
    poll_seconds: float = 5.0,
    run_has_ended: RunHasEnded | None = None,
) -> None:
    """Before a table's files are validated against the tables it references: wait while an
    ingest of one of those is in progress (its lock is held) or has files that landed and were
    reported (an ingest of them is on its way), so that files landing together are checked
    against each other. Bounded: after ``timeout_seconds`` the validation goes on, saying so."""
    from hr_pipeline.storage.landing import is_reported

    deadline = time.monotonic() + timeout_seconds
    said = set()
    for other in referenced:
        while True:
            busy = _held_by_a_run_in_progress(store, container, other, run_has_ended or _never_ended)
            markers = {
                b.name: b.metadata for b in store.list(container, marker_name(layout.incoming_prefix(other)))
            }
            landed = [
                b.name
                for b in store.list(container, layout.incoming_prefix(other))
                if is_reported(b.etag, markers.get(marker_name(b.name)))
            ]
            if not busy and not landed:
                break
            if other not in said:
                log.info(
                    "Waiting for the ingest of %s (%s) before validating %s against it",
                    other,
                    "in progress" if busy else f"{len(landed)} file(s) landed",
                    table,
                )
                said.add(other)
            if time.monotonic() > deadline:
                log.warning(
                    "Still waiting for the ingest of %s after %.0f s: validating %s against %s as it is now",
                    other,
                    timeout_seconds,
                    table,
                    other,
                )
                return
            time.sleep(poll_seconds)


def _held_by_a_run_in_progress(
    store: BlobStore, container: str, table: str, run_has_ended: RunHasEnded
) -> bool:
    held = IngestLock(store, container, table, "").holder()
    if held is None:
        return False
    try:
        return not run_has_ended(held[0])
    except Exception:  # noqa: BLE001 - a holder whose state is unknown counts as in progress
        return True
