"""The HTTP API app on its own (no api-server): its routes, its OpenAPI document, that
nothing answers without Airflow's authentication, what it refuses before queueing a run, and its
check for a waiting ingest run against a real Airflow metadata database (SQLite). The stack tests
(tests/stack/test_hr_api_plugin.py) run it mounted in a real api-server with real tokens."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient

from hr_pipeline.api.app import URL_PREFIX, app
from hr_pipeline.contract.tables import TABLE_NAMES

ENDPOINTS = [
    ("POST", "/api/ingest/{table_name}"),
    ("POST", "/api/backup/{table_name}"),
    ("POST", "/api/restore/{table_name}"),
    ("GET", "/api/metrics/quarterly-hires-2021"),
    ("GET", "/api/metrics/departments-above-mean-2021"),
]


def test_the_prefix_avoids_the_ones_airflow_reserves():
    assert not URL_PREFIX.startswith(("/api/v2", "/ui", "/execution", "/auth"))


def test_openapi_lists_every_endpoint_with_the_contract_tables_and_the_bearer_scheme():
    spec = app.openapi()
    assert {(method.upper(), path) for path, item in spec["paths"].items() for method in item} == set(
        ENDPOINTS
    )
    assert spec["components"]["schemas"]["TableName"]["enum"] == list(TABLE_NAMES)
    for path, item in spec["paths"].items():
        for operation in item.values():
            assert operation["security"] == [{"HTTPBearer": []}], path


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_token_no_answer(method, path):
    client = TestClient(app)
    response = client.request(method, path.format(table_name="jobs"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


# -- a client as an authenticated user (Airflow's auth manager is not running here) --------------


class _User:
    def get_name(self) -> str:
        return "tester"


@pytest.fixture
def as_user(monkeypatch):
    """The app with authentication answered by a stand-in user and authorization allowed: what
    runs is the app's own code after Airflow's checks (those are run for real in the stack test)."""
    from hr_pipeline.api import app as http_api

    monkeypatch.setattr(http_api, "_authorize", lambda *args, **kwargs: None)
    overridden = []

    def use(application):
        application.dependency_overrides[http_api.airflow_user] = _User
        overridden.append(application)
        return TestClient(application)

    yield use
    for application in overridden:  # the shared app answers 401 again for the next test
        application.dependency_overrides.pop(http_api.airflow_user, None)


@pytest.fixture
def triggered(monkeypatch):
    """Runs 'triggered' by the app, recorded instead of queued in a metadata database."""
    from hr_pipeline.api import app as http_api

    calls = []

    def fake_trigger(dag_id, conf, user):
        calls.append((dag_id, conf))
        return http_api.TriggeredRun(
            dag_id=dag_id,
            dag_run_id="manual__x",
            state="queued",
            conf=conf,
            status_url="/api/v2/dags/x/dagRuns/manual__x",
        )

    monkeypatch.setattr(http_api, "trigger", fake_trigger)
    return calls


# -- request bodies: at most HR_API_MAX_BODY_BYTES ----------------------------------------------


def test_the_default_limit_is_one_mebibyte_and_the_variable_sets_it(monkeypatch):
    from hr_pipeline.runtime.settings import DEFAULT_MAX_BODY_BYTES, max_body_bytes

    monkeypatch.delenv("HR_API_MAX_BODY_BYTES", raising=False)
    assert max_body_bytes() == DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    monkeypatch.setenv("HR_API_MAX_BODY_BYTES", "2048")
    assert max_body_bytes() == 2048
    for bad in ("0", "-1", "1MB", "1.5"):
        monkeypatch.setenv("HR_API_MAX_BODY_BYTES", bad)
        with pytest.raises(ValueError, match="HR_API_MAX_BODY_BYTES"):
            max_body_bytes()


def test_the_shipped_app_has_the_limit():
    from hr_pipeline.api.app import BodySizeLimit

    assert [m.cls for m in app.user_middleware] == [BodySizeLimit]


def _restore_body(size: int) -> bytes:
    """A valid restore request of exactly ``size`` bytes (JSON padded with spaces)."""
    body = b'{"backup": "latest"}'
    assert size >= len(body)
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("limit", [64, 1024 * 1024])
def test_a_body_at_the_limit_is_read_and_one_byte_more_is_413(as_user, triggered, monkeypatch, limit):
    from hr_pipeline.api.app import create_app

    monkeypatch.setenv("HR_API_MAX_BODY_BYTES", str(limit))
    client = as_user(create_app())
    headers = {"Content-Type": "application/json"}

    at_limit = client.post("/api/restore/jobs", content=_restore_body(limit), headers=headers)
    assert at_limit.status_code == 202, at_limit.text
    assert triggered == [
        ("restore_table", {"table_name": "jobs", "backup": "latest", "as_of": None, "dry_run": False})
    ]

    over = client.post("/api/restore/jobs", content=_restore_body(limit + 1), headers=headers)
    assert over.status_code == 413
    assert str(limit) in over.json()["detail"]
    assert "HR_API_MAX_BODY_BYTES" in over.json()["detail"]
    assert len(triggered) == 1  # nothing triggered


def test_a_chunked_body_without_length_is_413_past_the_limit(as_user, triggered):
    """No Content-Length (chunked transfer): the body is counted as it arrives."""
    from hr_pipeline.api.app import create_app

    client = as_user(create_app(max_body=1000))

    def chunks(padding: int):
        yield b'{"backup": "latest"'
        for _ in range(padding // 100):
            yield b" " * 100
        yield b"}"

    headers = {"Content-Type": "application/json"}
    response = client.post("/api/restore/jobs", content=chunks(100_000), headers=headers)
    assert response.status_code == 413, response.text
    assert triggered == []
    response = client.post("/api/restore/jobs", content=chunks(900), headers=headers)
    assert response.status_code == 202, response.text


def test_the_app_stops_reading_a_chunked_body_at_the_chunk_that_passes_the_limit(as_user, triggered):
    """ASGI level, through the whole app (the test client reads a body whole before the app
    sees it): the chunks after the one that passed the limit are never received."""
    import asyncio

    from hr_pipeline.api import app as http_api

    application = http_api.create_app(max_body=1000)
    application.dependency_overrides[http_api.airflow_user] = _User
    chunks = [b'{"backup": "latest"'] + [b" " * 100] * 1000 + [b"}"]
    received = []

    async def receive():
        index = len(received)
        received.append(index)
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/restore/jobs",
        "raw_path": b"/api/restore/jobs",
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    }
    asyncio.run(application(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    # 19 bytes, then 100 per chunk: the 11th chunk passes 1000 bytes, and is the last one read.
    assert len(received) == 11
    assert triggered == []


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read():
    """ASGI level: the app behind the limit never runs and ``receive`` is never called."""
    import asyncio

    from hr_pipeline.api.app import BodySizeLimit

    async def app_behind(scope, receive, send):
        raise AssertionError("the app must not run")

    async def receive():
        raise AssertionError("the body must not be read")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/restore/jobs",
        "headers": [
            (b"content-length", str(10 * 1024 * 1024 * 1024).encode()),
            (b"content-type", b"application/json"),
        ],
    }
    asyncio.run(BodySizeLimit(app_behind, limit=1024)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b"1024 bytes" in sent[1]["body"]


def test_an_anonymous_oversized_body_is_refused_too():
    response = TestClient(app).post("/api/ingest/jobs", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413


# -- 503 from the metric endpoints: generic to the client, the cause in the log ------------------


@pytest.mark.parametrize(
    "path", ["/api/metrics/quarterly-hires-2021", "/api/metrics/departments-above-mean-2021"]
)
def test_an_unreadable_warehouse_is_503_without_its_host_or_port(as_user, monkeypatch, caplog, path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on: the driver names host and port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": port,
                "login": "hr_reader",
                "password": "not-a-real-password",
                "schema": "hr_warehouse_db",
            }
        ),
    )

    with caplog.at_level(logging.ERROR, logger="hr_pipeline.api.app"):
        response = as_user(app).get(path)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "cannot be read from the warehouse" in detail
    assert "publish_metrics" in detail
    for leak in (
        "127.0.0.1",
        str(port),
        "hr_reader",
        "hr_warehouse_db",
        "not-a-real-password",
        "OperationalError",
        "psycopg",
    ):
        assert leak not in response.text, leak

    # The operator finds the cause in the api-server's log by the reference in the answer.
    reference = re.search(r"reference ([0-9a-f]{12})", detail).group(1)
    (record,) = [r for r in caplog.records if reference in r.getMessage()]
    logged = record.getMessage() + "\n" + caplog.text
    assert "127.0.0.1" in logged
    assert str(port) in logged


def test_a_missing_warehouse_connection_is_the_same_503(as_user, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "http", "host": "h.example"}))
    response = as_user(app).get("/api/metrics/quarterly-hires-2021")
    assert response.status_code == 503
    assert "h.example" not in response.text


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ],
)
def test_the_docs_pages_load_their_assets_from_the_app_not_a_cdn(page, assets):
    """A private network has no internet: the pages' scripts and styles are this app's own, from
    the pinned fastapi-offline package, and under the app's mount prefix."""
    from pathlib import Path

    import fastapi_offline

    packaged = Path(fastapi_offline.__file__).parent / "static"
    client = TestClient(app, root_path=URL_PREFIX)
    html = client.get(page).text
    assert "cdn.jsdelivr.net" not in html
    assert "fonts.googleapis.com" not in html
    assert f"{URL_PREFIX}/openapi.json" in html
    for asset in assets:
        assert f"{URL_PREFIX}/docs-assets/{asset}" in html
        response = TestClient(app).get(f"/docs-assets/{asset}")
        assert response.status_code == 200
        assert response.content == (packaged / asset).read_bytes(), f"{asset} is not the packaged file"


# -- refused before anything runs: fields the endpoint does not take, backup names ------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/restore/jobs", {"backup": "latest", "foo": 1}, "foo"),
        ("/api/restore/jobs", {"table_name": "departments"}, "table_name"),
        ("/api/ingest/jobs", {"batch_size": 10}, "batch_size"),
        ("/api/backup/jobs", {"tables": ["departments"]}, "tables"),
    ],
)
def test_a_body_field_the_endpoint_does_not_take_is_422(as_user, triggered, path, body, field):
    response = as_user(app).post(path, json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("extra_forbidden", ["body", field])
    assert triggered == []


def test_ingest_and_backup_take_no_body_or_an_empty_object(as_user, triggered):
    client = as_user(app)
    assert client.post("/api/backup/jobs").status_code == 202
    assert client.post("/api/backup/jobs", json={}).status_code == 202
    assert triggered == [("backup_tables", {"tables": ["jobs"]})] * 2


@pytest.mark.parametrize(
    "backup",
    [
        "../../etc/passwd",
        "jobs/../../etc/passwd",
        "jobs/jobs-20260102T030405.123456Z.avro/../../x",
        "departments/departments-20260102T030405.123456Z.avro",  # another table's backup
        "jobs/departments-20260102T030405.123456Z.avro",
        "jobs/jobs-20261302T030405.123456Z.avro",  # month 13
        "jobs/jobs-20260102T030405.123456Z.csv",
        "jobs/jobs-20260102T030405.123456Z.avro\n",
        "jobs/jobs-\u0662\u0660\u0662\u06660102T030405.123456Z.avro",  # the year in Arabic-Indic digits
        "jobs/jobs-latest.avro",
        "Latest",
    ],
)
def test_a_backup_that_is_not_latest_or_a_backup_name_of_the_table_is_422(as_user, triggered, backup):
    response = as_user(app).post("/api/restore/jobs", json={"backup": backup})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "backup"]
    assert error["input"] == backup
    assert "'latest'" in error["msg"]
    assert "jobs/jobs-<YYYYMMDDTHHMMSS.ffffffZ>.avro" in error["msg"]
    assert triggered == []


@pytest.mark.parametrize(
    "backup", ["latest", "jobs/jobs-20260102T030405.123456Z.avro", "jobs/jobs-20260102T030405Z.avro"]
)
def test_latest_and_the_backup_names_of_the_table_are_taken(as_user, triggered, backup):
    response = as_user(app).post("/api/restore/jobs", json={"backup": backup})
    assert response.status_code == 202, response.text
    assert triggered == [
        ("restore_table", {"table_name": "jobs", "backup": backup, "as_of": None, "dry_run": False})
    ]


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_the_names_backup_writes_are_backup_names_of_their_table_only(table):
    from datetime import datetime, timezone

    from hr_pipeline.api.app import is_backup_name
    from hr_pipeline.backup.backups import backup_blob_name

    for instant in (datetime.now(timezone.utc), datetime(1, 1, 1, tzinfo=timezone.utc)):
        name = backup_blob_name(table, instant)
        assert is_backup_name(table, name), name
        assert [other for other in TABLE_NAMES if is_backup_name(other, name)] == [table]


# -- the OpenAPI document: every status an endpoint answers, with what it means -----------------

TRIGGER_STATUSES = {"202", "401", "403", "404", "413", "422"}
STATUSES = {
    ("POST", "/api/ingest/{table_name}"): TRIGGER_STATUSES | {"409"},
    ("POST", "/api/backup/{table_name}"): TRIGGER_STATUSES,
    ("POST", "/api/restore/{table_name}"): TRIGGER_STATUSES,
    ("GET", "/api/metrics/quarterly-hires-2021"): {"200", "401", "403", "413", "503"},
    ("GET", "/api/metrics/departments-above-mean-2021"): {"200", "401", "403", "413", "503"},
}


def test_openapi_lists_every_status_of_every_endpoint_with_its_meaning():
    import http.client

    spec = app.openapi()
    operations = {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    assert {key: set(operation["responses"]) for key, operation in operations.items()} == STATUSES
    # FastAPI's own words when none is given: the status's phrase, "Successful Response", ...
    defaults = {"Successful Response", "Validation Error", "Additional Response"}
    for key, operation in operations.items():
        for code, response in operation["responses"].items():
            description = response["description"]
            assert description not in defaults | {http.client.responses[int(code)]}, (key, code)
            assert "content" in response, (key, code)  # the body's schema
    ingest = operations[("POST", "/api/ingest/{table_name}")]["responses"]
    assert "incoming/<table>/" in ingest["409"]["description"]
    assert "not registered" in ingest["404"]["description"]


# -- 409: one waiting ingest per table (Airflow's metadata database, SQLite) -----------------------


@pytest.fixture
def metadata_runs(airflow_db):
    """Adds DAG runs (and their wait_for_files task instance) to Airflow's metadata database, and
    removes them after the test."""
    from datetime import datetime, timezone

    from airflow import settings
    from airflow.models import DagRun, TaskInstance
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    added = []

    def add(dag_id, run_id, conf, run_state, sensor_state="no task instance", run_after=None):
        with settings.Session() as session:
            session.add(
                DagRun(
                    dag_id,
                    run_id,
                    run_type="manual",
                    conf=conf,
                    state=run_state,
                    run_after=run_after or datetime.now(timezone.utc),
                )
            )
            session.flush()
            if sensor_state != "no task instance":
                wait_for_files = EmptyOperator(task_id="wait_for_files", dag=DAG(dag_id, schedule=None))
                session.add(
                    TaskInstance(wait_for_files, dag_version_id=None, run_id=run_id, state=sensor_state)
                )
            session.commit()
        added.append((dag_id, run_id))
        return run_id

    yield add
    with settings.Session() as session:
        for dag_id, run_id in added:
            session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).delete()
            session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).delete()
        session.commit()


def _waiting(dag_id: str, table: str):
    from airflow import settings

    from hr_pipeline.api.app import waiting_ingest_run

    with settings.Session() as session:
        return waiting_ingest_run(session, table, dag_id=dag_id)


def _dag_id() -> str:
    import uuid

    return f"hr_api_test_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    "sensor_state",
    [
        "no task instance",
        None,
        "scheduled",
        "queued",
        "running",
        "deferred",
        "up_for_reschedule",
        "up_for_retry",
    ],
)
@pytest.mark.parametrize("run_state", ["queued", "running"])
def test_a_run_whose_sensor_has_not_finished_is_waiting(metadata_runs, run_state, sensor_state):
    dag_id = _dag_id()
    run_id = metadata_runs(dag_id, "manual__1", {"table_name": "jobs"}, run_state, sensor_state)
    assert _waiting(dag_id, "jobs") == run_id
    assert _waiting(dag_id, "departments") is None


@pytest.mark.parametrize("sensor_state", ["success", "failed", "skipped", "upstream_failed", "removed"])
def test_a_run_whose_sensor_has_finished_is_not_waiting(metadata_runs, sensor_state):
    """Its sensor found the files (or gave up): files that land now wait for a run of their own."""
    dag_id = _dag_id()
    metadata_runs(dag_id, "manual__1", {"table_name": "jobs"}, "running", sensor_state)
    assert _waiting(dag_id, "jobs") is None


@pytest.mark.parametrize("run_state", ["success", "failed"])
def test_an_ended_run_is_not_waiting(metadata_runs, run_state):
    dag_id = _dag_id()
    metadata_runs(dag_id, "manual__1", {"table_name": "jobs"}, run_state, "deferred")
    assert _waiting(dag_id, "jobs") is None


def test_the_oldest_waiting_run_of_the_table_is_named(metadata_runs):
    from datetime import datetime, timezone

    dag_id = _dag_id()
    day = datetime(2026, 1, 2, tzinfo=timezone.utc)
    metadata_runs(dag_id, "other_table", {"table_name": "departments"}, "running", "deferred", day)
    metadata_runs(dag_id, "no_conf", {}, "running", "deferred", day)
    metadata_runs(dag_id, "newer", {"table_name": "jobs"}, "queued", run_after=day.replace(hour=2))
    metadata_runs(dag_id, "older", {"table_name": "jobs"}, "running", "deferred", day.replace(hour=1))
    assert _waiting(dag_id, "jobs") == "older"


def test_a_second_ingest_of_a_table_with_a_waiting_run_is_409(as_user, triggered, metadata_runs):
    from datetime import datetime, timezone

    from airflow import settings
    from airflow.models import TaskInstance

    # The oldest run of ingest_table, whatever other tests left in this database.
    run_id = metadata_runs(
        "ingest_table",
        "manual__hr_api_waiting",
        {"table_name": "jobs"},
        "running",
        "deferred",
        datetime(2000, 1, 1, tzinfo=timezone.utc),
    )
    client = as_user(app)
    response = client.post("/api/ingest/jobs")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert run_id in detail
    assert "incoming/jobs/" in detail
    assert triggered == []

    with settings.Session() as session:  # its sensor found the files: a new ingest may start
        session.query(TaskInstance).filter_by(dag_id="ingest_table", run_id=run_id).update(
            {"state": "success"}
        )
        session.commit()
    assert client.post("/api/ingest/jobs").status_code == 202
    assert triggered == [("ingest_table", {"table_name": "jobs"})]


def test_a_dry_run_as_of_an_instant_reaches_the_restore(as_user, triggered):
    response = as_user(app).post("/api/restore/jobs", json={"as_of": "2026-01-02T03:04:05Z", "dry_run": True})
    assert response.status_code == 202, response.text
    assert triggered == [
        (
            "restore_table",
            {"table_name": "jobs", "backup": "latest", "as_of": "2026-01-02T03:04:05+00:00", "dry_run": True},
        )
    ]
