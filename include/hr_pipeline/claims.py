"""Which run of ``ingest_table`` owns a table's waiting files, so that runs cannot corrupt each other.

Runs of different tables never wait on each other. Runs of one table take turns: from the claim of
its files to their archiving, one run holds the table's **ingest lock**, a blob
(``processing/locks/<table>.lock``) created only if absent and naming the run. So a file is
claimed by one run only, and a table's files are loaded in the order they were claimed, whichever
run claims them.

- **Claiming** moves each waiting file, in name order, from ``incoming/`` into the run's own
  folder (``processing/<table>/<run>/claimed/<path>``), pinned to the version that was listed
  (its ETag): the run validates, loads and archives exactly that version. A file uploaded again
  under the same name while a run is in flight stays in ``incoming/`` for the next run.
- **A run that ended without releasing the lock** (it failed, or its worker died) is taken over
  by the next run of the table: that run replaces the lock (only if unchanged since it read it),
  takes the ended run's claimed files before any new one, and drops its hand-over files. Nothing a
  run claimed is lost, and files are still loaded in claim order.
- A run that finds the lock held by a run still in progress waits, saying which run it waits for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from hr_pipeline import blob_layout as layout
from hr_pipeline.blob_store import (
    BlobNotFoundError,
    BlobSourceChangedError,
    BlobSourceMissingError,
    BlobStore,
)
from hr_pipeline.landing import marker_name

log = logging.getLogger(__name__)

# Metadata of a claimed file: where it came from and its place in the claim order.
SOURCE_KEY = "hr_source"
ORDER_KEY = "hr_claim_order"
RUN_KEY = "hr_run_id"
TAKEN_OVER_KEY = "hr_taken_over_from"  # on the lock: the ended run whose claims this run takes


class IngestLockTimeout(RuntimeError):
    """The table's ingest lock stayed with another run in progress for too long."""


@dataclass(frozen=True)
class Claim:
    """A file this run owns: its original name under ``incoming/`` and where its bytes are."""

    source: str
    blob: str


def lock_name(table: str) -> str:
    return f"processing/locks/{table}.lock"


def claimed_prefix(table: str, run_id: str) -> str:
    return f"{layout.processing_prefix(table, run_id)}claimed/"


class IngestLock:
    """The ingest lock of one table, taken by one run (re-entrant for that run's retries)."""

    def __init__(
        self,
        store: BlobStore,
        container: str,
        table: str,
        run_id: str,
        run_has_ended: Callable[[str], bool] | None = None,
    ):
        self.store = store
        self.container = container
        self.table = table
        self.run_id = run_id
        # Whether another run has ended (Airflow knows; without it, every holder is in progress).
        self.run_has_ended = run_has_ended or (lambda run_id: False)

    def acquire(self, timeout_seconds: float, poll_seconds: float = 5.0) -> str | None:
        """Wait for the lock and take it. Returns the id of an ended run it was taken from (whose
        claims this run must take over), or None."""
        name = lock_name(self.table)
        metadata = {RUN_KEY: self.run_id, "acquired_at": datetime.now(timezone.utc).isoformat()}
        deadline = time.monotonic() + timeout_seconds
        waited_for = None
        started = time.monotonic()
        while True:
            if self.store.create_if_absent(self.container, name, self.run_id.encode(), metadata):
                self._log_waited(waited_for, started)
                return None
            try:
                holder = self.store.properties(self.container, name)
            except BlobNotFoundError:  # released between the two calls: try again
                continue
            holder_run = (holder.metadata or {}).get(RUN_KEY, "")
            if holder_run == self.run_id:  # a retry of this run's own task
                return (holder.metadata or {}).get(TAKEN_OVER_KEY) or None
            if self.run_has_ended(holder_run):
                if self.store.replace_if_unchanged(
                    self.container,
                    name,
                    self.run_id.encode(),
                    holder.etag,
                    {**metadata, TAKEN_OVER_KEY: holder_run},
                ):
                    log.warning(
                        "The ingest lock of %s was held by run %s, which has ended without "
                        "releasing it: this run takes it over, with the files that run "
                        "claimed",
                        self.table,
                        holder_run,
                    )
                    return holder_run
                continue
            if waited_for != holder_run:
                log.info(
                    "Waiting for run %s, which is ingesting %s (the table's ingest lock, "
                    "%s/%s): runs of one table take turns",
                    holder_run,
                    self.table,
                    self.container,
                    name,
                )
                waited_for = holder_run
            if time.monotonic() > deadline:
                raise IngestLockTimeout(
                    f"{self.table}: run {holder_run} still holds the ingest lock "
                    f"({self.container}/{name}) after {timeout_seconds:.0f} s; if that run is "
                    "stuck, stop it (mark it failed) and this table's next run takes over"
                )
            time.sleep(poll_seconds)

    def _log_waited(self, waited_for: str | None, started: float) -> None:
        if waited_for:
            log.info(
                "Took the ingest lock of %s after waiting %.0f s for run %s",
                self.table,
                time.monotonic() - started,
                waited_for,
            )

    def release(self) -> None:
        """Give the lock back, if this run holds it."""
        name = lock_name(self.table)
        try:
            holder = self.store.properties(self.container, name)
        except BlobNotFoundError:  # no lock: nothing to release
            return
        if (holder.metadata or {}).get(RUN_KEY) == self.run_id:
            self.store.delete_if_unchanged(self.container, name, holder.etag)
            log.info("Released the ingest lock of %s", self.table)


def claim_files(
    store: BlobStore, container: str, table: str, run_id: str, taken_over_from: str | None = None
) -> list[Claim]:
    """The files this run ingests, in the order they must be loaded: those it claimed in an earlier
    try, those of the ended run it took the lock from, then the files waiting now. Call it holding
    the table's ingest lock."""
    mine = claimed_prefix(table, run_id)
    if taken_over_from:
        _take_over(store, container, table, taken_over_from, run_id)
    claims = {blob.name: blob for blob in store.list(container, mine)}
    order = max((int((b.metadata or {}).get(ORDER_KEY, 0)) for b in claims.values()), default=0)
    waiting = [b for b in store.list(container, layout.incoming_prefix(table)) if not b.name.endswith("/")]
    for blob in waiting:
        destination = mine + layout.relative_path(table, blob.name)
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
        order += 1
        store.set_metadata(container, destination, {SOURCE_KEY: blob.name, ORDER_KEY: f"{order:09d}"})
        if store.exists(container, marker_name(blob.name)):  # the landing trigger's: done with
            store.delete(container, marker_name(blob.name))
        claims[destination] = store.properties(container, destination)
    ordered = sorted(claims.values(), key=lambda b: (int((b.metadata or {}).get(ORDER_KEY, 0)), b.name))
    return [
        Claim((b.metadata or {}).get(SOURCE_KEY) or _source_of(table, run_id, b.name), b.name)
        for b in ordered
    ]


def _source_of(table: str, run_id: str, claimed: str) -> str:
    return layout.incoming_prefix(table) + claimed[len(claimed_prefix(table, run_id)) :]


def _take_over(store: BlobStore, container: str, table: str, ended_run: str, run_id: str) -> None:
    """Move the ended run's claimed files into this run's folder, keeping their places in the
    claim order (before any file this run claims itself: it claims only after this), and delete
    the rest of its hand-over files (they are made again from the claimed files). Safe to repeat."""
    theirs = claimed_prefix(table, ended_run)
    mine = claimed_prefix(table, run_id)
    for blob in store.list(container, theirs):
        destination = mine + blob.name[len(theirs) :]
        store.move(container, blob.name, destination)
        metadata = blob.metadata or {}
        source = metadata.get(SOURCE_KEY) or _source_of(table, ended_run, blob.name)
        store.set_metadata(
            container, destination, {SOURCE_KEY: source, ORDER_KEY: metadata.get(ORDER_KEY, "0")}
        )
        log.warning("%s, claimed by ended run %s, is ingested by this run", source, ended_run)
    for leftover in store.list(container, layout.processing_prefix(table, ended_run)):
        store.delete(container, leftover.name)


def wait_for_referenced_ingests(
    store: BlobStore,
    container: str,
    table: str,
    referenced: list[str],
    timeout_seconds: float,
    poll_seconds: float = 5.0,
    run_has_ended: Callable[[str], bool] | None = None,
) -> None:
    """Before a table's files are validated against the tables it references: wait while an
    ingest of one of those is in progress (its lock is held) or has files that landed and were
    reported (an ingest of them is on its way), so that files landing together are checked
    against each other. Bounded: after ``timeout_seconds`` the validation goes on, saying so."""
    from hr_pipeline.landing import is_reported

    deadline = time.monotonic() + timeout_seconds
    said = set()
    for other in referenced:
        while True:
            busy = _held_by_a_run_in_progress(store, container, other, run_has_ended)
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
    store: BlobStore, container: str, table: str, run_has_ended: Callable[[str], bool] | None
) -> bool:
    try:
        holder = store.properties(container, lock_name(table))
    except BlobNotFoundError:
        return False
    return not (run_has_ended or (lambda run_id: False))((holder.metadata or {}).get(RUN_KEY, ""))
