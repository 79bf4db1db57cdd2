"""The sensor that waits for a table's extracts, and ends a run that has nothing to wait for.

At its first look it counts as waiting both the files under ``incoming/<table>/`` and the files
that ended runs claimed and did not archive (``claims.stranded_claims``: this run adopts them).
Files under ``incoming/`` while another run of the table is waiting are that run's: this run ends,
skipped, naming it (else the waiting run, its files taken, would wait its whole wait for nothing).
If there are none:

- a run whose wait is 0 (``ingest_on_landing`` starts runs so: their files landed, so another run
  took them) ends at once, skipped, naming the run that took them;
- a run while another run of the table is already waiting joins that one: it ends, skipped,
  naming it (files that land are that run's; one waiting run per table);
- otherwise it becomes the table's waiting run (``storage.layout.waiting_marker_name``) and waits
  in the triggerer, through the provider's ``WasbPrefixSensorTrigger``, for at most its wait.
  When the wait runs out it leaves its place and looks once more: a file that landed while a
  newer run yielded to this one is ingested, not left behind.

It imports the provider's Blob Storage modules, and with them the Azure SDK, only when it runs:
a DAG file using it parses without loading them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowSkipException

from hr_pipeline.storage import layout

log = logging.getLogger(__name__)

WAITING_RUN_KEY = "hr_run_id"


class IncomingFilesSensor(BaseSensorOperator):
    """Waits up to ``wait_minutes`` until a file of ``table_name`` is waiting (see the module);
    its timeout says which folder stayed empty and what to do about it."""

    template_fields: Sequence[str] = ("container_name", "table_name", "wasb_conn_id", "wait_minutes")

    def __init__(
        self,
        *,
        container_name: str,
        table_name: str,
        wasb_conn_id: str,
        wait_minutes: float | str = 0,
        deferrable: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.container_name = container_name
        self.table_name = table_name
        self.wasb_conn_id = wasb_conn_id
        self.wait_minutes = wait_minutes
        self.deferrable = deferrable

    @property
    def prefix(self) -> str:
        return layout.incoming_prefix(self.table_name)

    def _timeout_message(self) -> str:
        return (
            f"No file arrived under {self.container_name}/{self.prefix} within {int(self.timeout)} s. "
            "Upload the extract there (CSV, UTF-8) and trigger the DAG again."
        )

    def _store(self):
        from hr_pipeline.storage.blob_store import BlobStore

        return BlobStore(self.wasb_conn_id)

    def poke(self, context) -> bool:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        self.log.info("Looking for files under %s/%s", self.container_name, self.prefix)
        return WasbHook(wasb_conn_id=self.wasb_conn_id).check_for_prefix(self.container_name, self.prefix)

    def _stranded(self, context) -> list[str]:
        from hr_pipeline.ops.run_states import ended_runs_of_this_dag
        from hr_pipeline.storage.claims import stranded_claims

        return stranded_claims(
            self._store(), self.container_name, self.table_name, ended_runs_of_this_dag(context)
        )

    def execute(self, context):
        self.timeout = max(0.0, float(self.wait_minutes)) * 60
        if self.poke(context):
            waiting = self._other_waiting_run(context)
            if waiting:
                self._end(
                    f"Run {waiting} is waiting for files of {self.table_name} "
                    f"({self.container_name}/{self.prefix}) and takes the ones there now, so this run ends"
                )
            return None
        stranded = self._stranded(context)
        if stranded:
            self.log.info(
                "%d file(s) claimed by runs that ended without archiving them: this run adopts them (%s)",
                len(stranded),
                ", ".join(stranded[:5]),
            )
            return None
        if self.timeout == 0:
            self._end(self._taken_by(context))
        waiting = self._take_waiting_place(context)
        if waiting:
            self._end(
                f"Run {waiting} is already waiting for files of {self.table_name} "
                f"({self.container_name}/{self.prefix}): files landing there are its to ingest, "
                "so this run ends"
            )
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as error:
                timed_out = error
            finally:
                self._leave_waiting_place(context)
            if self._arrived_at_the_end(context):
                return None
            raise AirflowSensorTimeout(self._timeout_message()) from timed_out
        from airflow.providers.microsoft.azure.triggers.wasb import WasbPrefixSensorTrigger

        self.defer(
            timeout=timedelta(seconds=self.timeout),
            trigger=WasbPrefixSensorTrigger(
                container_name=self.container_name,
                prefix=self.prefix,
                wasb_conn_id=self.wasb_conn_id,
                check_options={},
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )
        return None

    def _end(self, why: str) -> None:
        """End the run here: skipped, saying why in the task's log (Airflow logs only "Skipping")."""
        self.log.warning(why)
        raise AirflowSkipException(why)

    def _taken_by(self, context) -> str:
        """Why a run started for files that landed has nothing left: which run took them."""
        from hr_pipeline.storage.claims import IngestLock

        landed = (context["dag_run"].conf or {}).get("landed_files") or []
        held = IngestLock(self._store(), self.container_name, self.table_name, "").holder()
        taker = f"run {held[0]}, which holds the table's ingest lock," if held else "an earlier run"
        return (
            f"Nothing is waiting under {self.container_name}/{self.prefix}"
            + (f" (this run was started for {len(landed)} file(s) that landed)" if landed else "")
            + f": {taker} took them (the ingest_files ledger names the run of each file), so this "
            "run ends"
        )

    def _other_waiting_run(self, context) -> str | None:
        """The run, not this one, that is the table's waiting run and has not ended; a run whose
        state cannot be read counts as not waiting (this run takes the files: the ingest lock
        still keeps two runs' loads apart)."""
        from hr_pipeline.ops.run_states import RunStateUnknown, ended_runs_of_this_dag
        from hr_pipeline.storage.blob_store import BlobNotFoundError

        try:
            marker = self._store().properties(
                self.container_name, layout.waiting_marker_name(self.table_name)
            )
        except BlobNotFoundError:
            return None
        other = (marker.metadata or {}).get(WAITING_RUN_KEY, "")
        if not other or other == context["run_id"]:
            return None
        try:
            return None if ended_runs_of_this_dag(context)(other) else other
        except RunStateUnknown as error:
            self.log.warning("Cannot tell whether run %s still waits (%s): taking the files", other, error)
            return None

    def _arrived_at_the_end(self, context) -> bool:
        """The last look when the wait ran out (after leaving the waiting place, so a run that
        yielded to this one before then has left its files for this look)."""
        if not self.poke(context):
            return False
        self.log.info("A file arrived as the wait ran out: ingesting it")
        return True

    def _take_waiting_place(self, context) -> str | None:
        """Become the table's one waiting run; returns the run already waiting, if any."""
        from hr_pipeline.ops.run_states import RunStateUnknown, ended_runs_of_this_dag
        from hr_pipeline.storage.blob_store import BlobNotFoundError

        store, name, run_id = self._store(), layout.waiting_marker_name(self.table_name), context["run_id"]
        metadata = {WAITING_RUN_KEY: run_id, "since": datetime.now(timezone.utc).isoformat()}
        for _ in range(3):
            if store.create_if_absent(self.container_name, name, run_id.encode(), metadata):
                return None
            try:
                marker = store.properties(self.container_name, name)
            except BlobNotFoundError:
                continue
            other = (marker.metadata or {}).get(WAITING_RUN_KEY, "")
            if other == run_id:  # this task's own earlier try
                return None
            try:
                ended = ended_runs_of_this_dag(context)(other)
            except RunStateUnknown as error:
                self.log.warning("Cannot tell whether run %s still waits (%s): waiting too", other, error)
                return None
            if not ended:
                return other
            store.replace_if_unchanged(self.container_name, name, run_id.encode(), marker.etag, metadata)
        return None

    def _leave_waiting_place(self, context) -> None:
        """Stop being the table's waiting run. Best effort: a marker left behind names a run
        that has ended, which the next run replaces."""
        from hr_pipeline.storage.blob_store import BlobNotFoundError

        if not context.get("run_id"):
            return
        name = layout.waiting_marker_name(self.table_name)
        try:
            store = self._store()
            marker = store.properties(self.container_name, name)
            if (marker.metadata or {}).get(WAITING_RUN_KEY) == context["run_id"]:
                store.delete_if_unchanged(self.container_name, name, marker.etag)
        except BlobNotFoundError:
            return
        except Exception as error:  # noqa: BLE001 - the sensor's own outcome matters more
            self.log.warning("Could not remove %s/%s (%s)", self.container_name, name, error)

    def execute_complete(self, context, event):
        self._leave_waiting_place(context)
        # The trigger stops at the first error listing the folder (Azurite or Azure unreachable,
        # say) and reports it: say where, so the failure - retried by the task's retries - is clear.
        if not event:
            raise AirflowException(f"No event from the triggerer for {self.container_name}/{self.prefix}")
        if event.get("status") == "error":
            raise AirflowException(
                f"Could not list {self.container_name}/{self.prefix} on connection "
                f"{self.wasb_conn_id!r}: {event.get('message')}"
            )
        self.log.info(event.get("message"))
        return None

    def resume_execution(self, next_method, next_kwargs, context):
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as error:  # the deferred path: the trigger timed out
            self._leave_waiting_place(context)
            if self._arrived_at_the_end(context):
                return None
            raise AirflowSensorTimeout(self._timeout_message()) from error
