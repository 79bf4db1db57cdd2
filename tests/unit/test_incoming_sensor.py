"""The sensor of ingest_table fails with a message that names the empty folder."""

import pytest
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from hr_pipeline.ops.sensors import IncomingFilesSensor


class _Sensor(IncomingFilesSensor):
    """The sensor with the folder's listing given (the listing itself is tested against Azurite)."""

    files_waiting = False

    def poke(self, context) -> bool:
        return self.files_waiting


def sensor(**kwargs):
    return _Sensor(
        task_id="wait_for_files",
        container_name="raw-data",
        table_name="jobs",
        wasb_conn_id="azure_blob",
        deferrable=True,
        timeout=90,
        **kwargs,
    )


def test_trigger_timeout_says_which_folder_stayed_empty_and_what_to_do():
    with pytest.raises(AirflowSensorTimeout) as failure:
        sensor().resume_execution(
            TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context={}
        )
    message = str(failure.value)
    assert "No file arrived under raw-data/incoming/jobs/ within 90 s" in message
    assert "Upload the extract there" in message


def test_a_file_that_arrived_as_the_wait_ran_out_is_ingested_not_timed_out():
    late = sensor()
    late.files_waiting = True
    outcome = late.resume_execution(
        TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context={}
    )
    assert outcome is None


def test_other_trigger_failures_are_not_reported_as_timeouts():
    with pytest.raises(AirflowException, match="^connection refused$") as failure:
        sensor().resume_execution(TRIGGER_FAIL_REPR, {"error": "connection refused"}, context={})
    assert not isinstance(failure.value, AirflowSensorTimeout)
    assert "connection refused" in str(failure.value)


def test_an_error_listing_the_folder_names_the_folder_and_the_connection():
    with pytest.raises(AirflowException) as failure:
        sensor().execute_complete({}, {"status": "error", "message": "Connection reset by peer"})
    # A plain AirflowException: retried (the DAG's retries), unlike a timeout or a fail exception.
    assert type(failure.value) is AirflowException
    assert str(failure.value) == (
        "Could not list raw-data/incoming/jobs/ on connection 'azure_blob': Connection reset by peer"
    )


def test_a_found_file_completes_the_sensor():
    assert sensor().execute_complete({}, {"status": "success", "message": "found"}) is None
