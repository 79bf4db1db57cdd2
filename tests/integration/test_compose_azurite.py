"""The compose file's Azurite account, for real: Azurite (node_modules, the same emulator as the
image) started with the compose file's AZURITE_ACCOUNTS, reached with the compose file's own
connection; the emulator's well-known key is refused."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.unit.test_docker_compose import (  # noqa: F401 - the compose file, as its tests read it
    AZURITE_ACCOUNT,
    PROJECT_ROOT,
    compose,
    example_env,
    generated_env,
    make_env,
    raw_compose,
    service_env,
)


@pytest.mark.azurite
def test_the_compose_azurite_account_works_and_the_well_known_key_does_not(
    compose,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
):
    """Azurite (node_modules, the same emulator as the image) with the azurite service's
    AZURITE_ACCOUNTS; the pipeline's BlobStore on the compose file's connection creates a
    container (what hr-storage-init does); the emulator's default account and key are refused."""
    from tests.conftest import AZURITE_ACCOUNT_KEY as WELL_KNOWN_KEY
    from tests.conftest import free_port, skip_or_fail

    executable = PROJECT_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None or not executable.exists():
        skip_or_fail("Node.js or node_modules/azurite is missing: Azurite cannot run")
    port = free_port()
    env = {**os.environ, "AZURITE_ACCOUNTS": service_env(compose, "azurite")["AZURITE_ACCOUNTS"]}
    process = subprocess.Popen(
        [
            str(executable),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(tmp_path / "azurite"),
            "--skipApiVersionCheck",
            "--loose",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, f"Azurite exited with {process.returncode} before it listened"
            assert time.monotonic() < deadline, "Azurite did not listen within 60 s"
            time.sleep(0.2)

        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
        from azure.storage.blob import BlobServiceClient

        from hr_pipeline.storage.blob_store import BlobStore

        conn = json.loads(service_env(compose, "airflow-worker")["AIRFLOW_CONN_AZURE_BLOB"])
        conn["extra"]["connection_string"] = conn["extra"]["connection_string"].replace(
            "http://azurite:10000/", f"http://127.0.0.1:{port}/"
        )
        monkeypatch.setenv("AIRFLOW_CONN_AZURE_BLOB", json.dumps(conn))
        BlobStore().ensure_container("raw-data")

        for account, key in ((AZURITE_ACCOUNT, WELL_KNOWN_KEY), ("devstoreaccount1", WELL_KNOWN_KEY)):
            client = BlobServiceClient.from_connection_string(
                f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{account};"
            )
            with pytest.raises((ClientAuthenticationError, HttpResponseError)):
                list(client.list_containers())
    finally:  # Azurite's graceful stop waits for the clients' keep-alive connections
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
