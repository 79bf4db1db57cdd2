"""The seed's HTTP API app on its own (no api-server): its routes, its OpenAPI document, and that
nothing answers without Airflow's authentication. The stack tests (tests/stack/test_hr_api_plugin.py)
run it mounted in a real api-server with real tokens."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hr_pipeline.contracts import TABLE_NAMES
from hr_pipeline.legacy_api import URL_PREFIX, app

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
        ENDPOINTS)
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
