"""The sensor that waits for extracts, with a failure message a user can act on."""

from __future__ import annotations

from airflow.providers.microsoft.azure.sensors.wasb import WasbPrefixSensor
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout


class IncomingFilesSensor(WasbPrefixSensor):
    """``WasbPrefixSensor`` (deferrable: the wait runs in the triggerer, not a worker slot) whose
    timeout says which folder stayed empty and what to do about it."""

    def _timeout_message(self) -> str:
        return (
            f"No file arrived under {self.container_name}/{self.prefix} within {int(self.timeout)} s. "
            "Upload the extract there (CSV, UTF-8) and trigger the DAG again."
        )

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:  # the non-deferred path
            raise AirflowSensorTimeout(self._timeout_message()) from error

    def execute_complete(self, context, event):
        # The trigger stops at the first error listing the folder (Azurite or Azure unreachable,
        # say) and reports it: say where, so the failure - retried by the task's retries - is clear.
        if event and event.get("status") == "error":
            raise AirflowException(
                f"Could not list {self.container_name}/{self.prefix} on connection "
                f"{self.wasb_conn_id!r}: {event.get('message')}"
            )
        return super().execute_complete(context, event)

    def resume_execution(self, next_method, next_kwargs, context):
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as error:  # the deferred path: the trigger timed out
            raise AirflowSensorTimeout(self._timeout_message()) from error
