"""The sensor that waits for extracts, with a failure message a user can act on.

It does what the provider's ``WasbPrefixSensor`` does (a poke, then a deferral to the provider's
``WasbPrefixSensorTrigger``: the wait runs in the triggerer, not a worker slot), but imports the
provider's Blob Storage modules, and with them the Azure SDK, only when it runs: a DAG file using
it parses without loading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout


class IncomingFilesSensor(BaseSensorOperator):
    """Waits until a blob exists under ``prefix`` of ``container_name``; its timeout says which
    folder stayed empty and what to do about it."""

    template_fields: Sequence[str] = ("container_name", "prefix", "wasb_conn_id")

    def __init__(
        self, *, container_name: str, prefix: str, wasb_conn_id: str, deferrable: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.container_name = container_name
        self.prefix = prefix
        self.wasb_conn_id = wasb_conn_id
        self.deferrable = deferrable

    def _timeout_message(self) -> str:
        return (
            f"No file arrived under {self.container_name}/{self.prefix} within {int(self.timeout)} s. "
            "Upload the extract there (CSV, UTF-8) and trigger the DAG again."
        )

    def poke(self, context) -> bool:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        self.log.info("Looking for files under %s/%s", self.container_name, self.prefix)
        return WasbHook(wasb_conn_id=self.wasb_conn_id).check_for_prefix(self.container_name, self.prefix)

    def execute(self, context):
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as error:
                raise AirflowSensorTimeout(self._timeout_message()) from error
        if self.poke(context):
            return None
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

    def execute_complete(self, context, event):
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
            raise AirflowSensorTimeout(self._timeout_message()) from error
