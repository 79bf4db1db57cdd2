"""The pipeline's HTTP API, served as an Airflow plugin (``plugins/hr_api_plugin.py``), on the
real stack: mounted at /hr by the api-server, protected by Airflow's own authentication, and
triggering the same DAGs as the REST API. Nothing is mocked."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]


@pytest.fixture(scope="module")
def hr(local_stack):
    """A client of /hr with the admin's REST API token."""
    with httpx.Client(
        base_url=f"{local_stack.url}/hr",
        timeout=60,
        headers={"Authorization": f"Bearer {local_stack.api.token}"},
    ) as client:
        yield client


def _manual_runs(local_stack, dag_id: str) -> int:
    """How many manual runs ``dag_id`` has (scheduled runs may appear at any time)."""
    return local_stack.api.json(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1, "run_type": "manual"}
    )["total_entries"]


def test_every_endpoint_needs_airflow_authentication(local_stack):
    runs_before = {
        dag_id: _manual_runs(local_stack, dag_id)
        for dag_id in ("ingest_table", "backup_tables", "restore_table")
    }
    anonymous = httpx.Client(base_url=f"{local_stack.url}/hr", timeout=30)
    for method, path in [
        ("POST", "/api/ingest/jobs"),
        ("POST", "/api/backup/jobs"),
        ("POST", "/api/restore/jobs"),
        ("GET", "/api/metrics/quarterly-hires-2021"),
        ("GET", "/api/metrics/departments-above-mean-2021"),
    ]:
        response = anonymous.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
    forged = anonymous.get("/api/metrics/quarterly-hires-2021", headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code in (401, 403)
    # Refused means nothing was queued.
    assert {dag_id: _manual_runs(local_stack, dag_id) for dag_id in runs_before} == runs_before


def test_openapi_documents_the_endpoints_and_the_bearer_scheme(local_stack):
    spec = httpx.get(f"{local_stack.url}/hr/openapi.json", timeout=30).json()
    assert set(spec["paths"]) == {
        "/api/ingest/{table_name}",
        "/api/backup/{table_name}",
        "/api/restore/{table_name}",
        "/api/metrics/quarterly-hires-2021",
        "/api/metrics/departments-above-mean-2021",
    }
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    table_schema = spec["components"]["schemas"]["TableName"]
    assert table_schema["enum"] == ["departments", "jobs", "hired_employees"]


def test_an_unknown_table_is_refused_with_the_valid_names(hr):
    response = hr.post("/api/ingest/employees")
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert "departments" in message
    assert "hired_employees" in message


def test_ingest_triggers_ingest_table_and_returns_the_run(local_stack, hr, published):
    local_stack.upload_extract("jobs")
    response = hr.post("/api/ingest/jobs")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["dag_id"] == "ingest_table"
    assert body["conf"] == {"table_name": "jobs"}
    run = local_stack.api.wait_for_run("ingest_table", body["dag_run_id"], timeout=900)
    assert run["state"] == "success", local_stack.api.failure_report("ingest_table", body["dag_run_id"])
    assert run["conf"] == {"table_name": "jobs"}
    assert run["triggering_user_name"] == "admin"
    assert local_stack.row_count("jobs") == 183


def test_backup_and_restore_trigger_their_dags(local_stack, hr, published):
    backup = hr.post("/api/backup/departments")
    assert backup.status_code == 202, backup.text
    assert backup.json()["conf"] == {"tables": ["departments"]}
    run = local_stack.api.wait_for_run("backup_tables", backup.json()["dag_run_id"])
    assert run["state"] == "success", local_stack.api.failure_report("backup_tables", run["dag_run_id"])

    restore = hr.post("/api/restore/departments", json={"backup": "latest"})
    assert restore.status_code == 202, restore.text
    assert restore.json()["conf"] == {
        "table_name": "departments",
        "backup": "latest",
        "as_of": None,
        "dry_run": False,
    }
    run = local_stack.api.wait_for_run("restore_table", restore.json()["dag_run_id"])
    assert run["state"] == "success", local_stack.api.failure_report("restore_table", run["dag_run_id"])
    assert local_stack.row_count("departments") == 12


def test_a_bad_parameter_is_refused_by_the_dag_params(hr):
    response = hr.post("/api/restore/jobs", json={"backup": ""})
    assert response.status_code == 422  # min_length of the request model


def test_metrics_are_read_from_the_published_tables(local_stack, hr, published):
    quarterly = hr.get("/api/metrics/quarterly-hires-2021")
    assert quarterly.status_code == 200, quarterly.text
    rows = quarterly.json()
    assert sum(row["q1"] + row["q2"] + row["q3"] + row["q4"] for row in rows) == 1643
    assert [(row["department"], row["job"]) for row in rows] == sorted(
        (row["department"], row["job"]) for row in rows
    )
    assert len(rows) == local_stack.sql("SELECT count(*) FROM quarterly_hires_2021")[0][0]

    above = hr.get("/api/metrics/departments-above-mean-2021")
    assert above.status_code == 200, above.text
    assert len(above.json()) == 7
    assert above.json()[0] == {"id": above.json()[0]["id"], "department": "Support", "hired": 216}


def test_a_body_over_the_limit_is_413_and_queues_nothing(local_stack, hr):
    """HR_API_MAX_BODY_BYTES is unset on the local stack: the default limit, 1 MiB."""
    before = _manual_runs(local_stack, "restore_table")
    body = b'{"backup": "latest"}' + b" " * (1024 * 1024)
    response = hr.post("/api/restore/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "1048576 bytes" in response.json()["detail"]
    assert _manual_runs(local_stack, "restore_table") == before


def test_a_declared_length_over_the_limit_is_answered_before_any_body_is_sent(local_stack):
    """Through the api-server's own HTTP server and its mount of /hr: headers that announce 10 GiB,
    and not one byte of body; the 413 comes back at once (nothing waits for the body)."""
    url = urlparse(local_stack.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /hr/api/restore/jobs HTTP/1.1\r\nHost: "
            + url.netloc.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, f"the connection closed without an answer: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_second_ingest_of_a_table_with_a_waiting_run_is_409(local_stack, hr):
    """A run of a table with no file waiting sits in its sensor; a second ingest of that table is
    refused with the waiting run's id, and nothing more is queued. The waiting run is stopped and
    deleted after, as the other stack tests count runs and take files of their own."""
    api = local_stack.api
    table = "departments"
    assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", f"incoming/{table}/") == []
    before = _manual_runs(local_stack, "ingest_table")
    first = hr.post(f"/api/ingest/{table}")
    assert first.status_code == 202, first.text
    waiting = first.json()["dag_run_id"]
    try:
        second = hr.post(f"/api/ingest/{table}")
        assert second.status_code == 409, second.text
        detail = second.json()["detail"]
        assert waiting in detail
        assert f"incoming/{table}/" in detail
        assert _manual_runs(local_stack, "ingest_table") == before + 1
        # Still refused once the run is in its sensor, whatever state the first answer saw it in.
        states = {}
        for _ in range(300):
            states = {ti["task_id"]: ti["state"] for ti in api.task_instances("ingest_table", waiting)}
            if states.get("wait_for_files") == "deferred":
                break
            time.sleep(1)
        assert states.get("wait_for_files") == "deferred", states
        assert hr.post(f"/api/ingest/{table}").status_code == 409
        assert _manual_runs(local_stack, "ingest_table") == before + 1
    finally:
        api.json("PATCH", f"/api/v2/dags/ingest_table/dagRuns/{waiting}", json={"state": "failed"})
        _delete_run(api, waiting)


def _delete_run(api, run_id: str) -> None:
    """Delete a run just marked failed; the api-server may answer 500 while the scheduler still
    writes its task instances (SQLite metadata), so it is asked again, a bounded number of times."""
    for _ in range(10):
        answer = api.request("DELETE", f"/api/v2/dags/ingest_table/dagRuns/{run_id}")
        if answer.status_code in (204, 404):
            return
        time.sleep(2)
    answer.raise_for_status()
