"""The Azure configuration that ships in config/azure/ is what Airflow needs to run in Azure.

Key Vault, Managed Identity and Azure SQL cannot be reached from here (no Azure credentials, no
network to Azure): the Azure SDK calls are mocked, and only those. What runs for real is Airflow's
own machinery: its configuration parser reading the shipped variables, ``initialize_secrets_backends``
/ ``ensure_secrets_loaded`` (server and worker side) instantiating the backend class, the backend's
secret naming, the SDK's connection lookup through the backend chain, the provider hooks
building their clients from the resolved connections, and the configuration parser reading
Airflow's own secrets (JWT secret, secret_key, Fernet key) from the vault through ``*_SECRET``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AZURE_ENV = PROJECT_ROOT / "config" / "azure" / "airflow-azure.env"
SECRETS_EXAMPLE = PROJECT_ROOT / "config" / "azure" / "keyvault-secrets.example.json"
BACKEND_CLASS = "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend"
KEY_VAULT_MODULE = "airflow.providers.microsoft.azure.secrets.key_vault"


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep == "=", f"{path.name}:{number}: not KEY=VALUE (no '=')"
        assert key.strip() == key, f"{path.name}:{number}: not KEY=VALUE (blanks around {key!r})"
        assert key.isupper(), f"{path.name}:{number}: not KEY=VALUE ({key!r} is not upper case)"
        env[key] = value
    return env


CONFIG_SECRETS = {  # [section] key -> Key Vault secret
    ("api_auth", "jwt_secret"): "airflow-config-jwt-secret",
    ("api", "secret_key"): "airflow-config-api-secret-key",
    ("core", "fernet_key"): "airflow-config-fernet-key",
}


def shipped_secrets() -> dict[str, dict | str]:
    data = json.loads(SECRETS_EXAMPLE.read_text())
    return {name: value for name, value in data.items() if not name.startswith("_")}


def vault_values() -> dict[str, str]:
    """The secrets as a vault created from the example holds them: connections as JSON, and the
    configuration secrets with real values in place of the example's placeholders."""
    import base64
    import os
    import secrets

    values = {name: json.dumps(value) for name, value in shipped_secrets().items() if isinstance(value, dict)}
    values["airflow-config-jwt-secret"] = secrets.token_urlsafe(48)
    values["airflow-config-api-secret-key"] = secrets.token_urlsafe(32)
    values["airflow-config-fernet-key"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return values


@pytest.fixture
def azure_env(monkeypatch):
    """The shipped environment applied to this process (as a container in Azure would have it)."""
    env = read_env_file(AZURE_ENV)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Connections must come from Key Vault here, not from the test session's environment.
    monkeypatch.delenv("AIRFLOW_CONN_AZURE_BLOB", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE", raising=False)
    # Nor the Fernet key the test session sets for itself (tests/conftest.py).
    monkeypatch.delenv("AIRFLOW__CORE__FERNET_KEY", raising=False)
    from airflow.sdk import configuration as sdk_configuration

    sdk_configuration.clear_secrets_backends_cache()
    yield env
    sdk_configuration.clear_secrets_backends_cache()


class FakeSecretClient:
    """Stands in for azure.keyvault.secrets.SecretClient (Key Vault is unreachable from here)."""

    instances: list[FakeSecretClient] = []

    vault: dict[str, str] = {}

    def __init__(self, vault_url, credential, **kwargs):
        self.vault_url = vault_url
        self.credential = credential
        self.requested: list[str] = []
        self.secrets = FakeSecretClient.vault
        FakeSecretClient.instances.append(self)

    def get_secret(self, name):
        from azure.core.exceptions import ResourceNotFoundError

        self.requested.append(name)
        if name not in self.secrets:
            raise ResourceNotFoundError(f"secret {name} not found")
        return SimpleNamespace(name=name, value=self.secrets[name])


@pytest.fixture
def key_vault(monkeypatch, azure_env):
    """Mock the two Azure SDK entry points the Key Vault backend uses."""
    credentials = []

    def fake_credential(**kwargs):
        credentials.append(kwargs)
        return SimpleNamespace(kind="DefaultAzureCredential", kwargs=kwargs)

    FakeSecretClient.instances = []
    FakeSecretClient.vault = vault_values()
    monkeypatch.setattr(f"{KEY_VAULT_MODULE}.SecretClient", FakeSecretClient)
    monkeypatch.setattr(f"{KEY_VAULT_MODULE}.get_sync_default_azure_credential", fake_credential)
    return SimpleNamespace(
        clients=FakeSecretClient.instances, credentials=credentials, vault=FakeSecretClient.vault
    )


def backend_kwargs(env: dict[str, str]) -> dict:
    return json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"])


# -- the shipped files --------------------------------------------------------------------------


def test_shipped_env_configures_the_key_vault_backend():
    env = read_env_file(AZURE_ENV)
    assert env["AIRFLOW__SECRETS__BACKEND"] == BACKEND_CLASS
    kwargs = backend_kwargs(env)
    assert kwargs["connections_prefix"] == "airflow-connections"
    assert kwargs["variables_prefix"] == "airflow-variables"
    assert kwargs["config_prefix"] == "airflow-config"
    assert kwargs["vault_url"].startswith("https://")
    assert ".vault.azure.net" in kwargs["vault_url"]
    # Airflow's own secrets: only the names of their Key Vault secrets, never a value.
    for (section, key), secret in CONFIG_SECRETS.items():
        variable = f"AIRFLOW__{section.upper()}__{key.upper()}"
        assert variable not in env
        assert f"{variable}_CMD" not in env
        assert f"{kwargs['config_prefix']}-{env[f'{variable}_SECRET']}" == secret
    # Containers named as in docs/CONTRACT.md; nothing secret in the file.
    assert env["AZURE_BLOB_CONTAINER_RAW_DATA"] == "raw-data"
    assert env["AZURE_BLOB_CONTAINER_BACKUPS"] == "backups"
    assert not any(k.startswith("AIRFLOW_CONN_") for k in env), "connections belong in Key Vault"
    assert "AZURE_CLIENT_SECRET" not in env
    assert "AccountKey" not in AZURE_ENV.read_text()


def test_shipped_secrets_are_the_pipeline_connections():
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend

    from hr_pipeline.runtime.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID

    secrets = shipped_secrets()
    expected = {
        AzureKeyVaultBackend.build_path("airflow-connections", conn_id): conn_id
        for conn_id in (BLOB_CONN_ID, WAREHOUSE_CONN_ID)
    }
    assert set(expected) == {"airflow-connections-azure-blob", "airflow-connections-warehouse"}
    assert set(secrets) == set(expected) | set(CONFIG_SECRETS.values())
    # The configuration secrets of the example are placeholders, not values.
    for name in CONFIG_SECRETS.values():
        assert secrets[name].startswith("<"), f"{name}: {secrets[name]!r} is not a <placeholder>"
        assert secrets[name].endswith(">"), f"{name}: {secrets[name]!r} is not a <placeholder>"

    blob = secrets["airflow-connections-azure-blob"]
    assert blob["conn_type"] == "wasb"
    assert blob["host"].startswith("https://")
    assert ".blob.core.windows.net" in blob["host"]
    # Managed identity, per the provider: no key, SAS, password or connection string at all.
    assert not blob.get("password")
    assert not blob.get("login")
    assert set(blob["extra"]) == {"managed_identity_client_id"}

    warehouse = secrets["airflow-connections-warehouse"]
    assert warehouse["conn_type"] == "mssql"
    assert warehouse["host"].endswith(".database.windows.net")
    assert warehouse["port"] == 1433
    assert warehouse["schema"] == "hr"


# -- Airflow instantiating the backend from that configuration ------------------------------------


def test_server_side_backends_start_with_key_vault(azure_env):
    from airflow.configuration import initialize_secrets_backends
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend

    backends = initialize_secrets_backends()
    assert isinstance(backends[0], AzureKeyVaultBackend)
    assert [type(b).__name__ for b in backends[1:]] == ["EnvironmentVariablesBackend", "MetastoreBackend"]
    kwargs = backend_kwargs(azure_env)
    assert backends[0].vault_url == kwargs["vault_url"]
    assert backends[0].connections_prefix == "airflow-connections"
    assert backends[0].variables_prefix == "airflow-variables"
    assert backends[0].config_prefix == "airflow-config"


def test_worker_side_backends_fall_back_to_the_same_key_vault(azure_env):
    """Task processes (Airflow 3 task SDK) use [workers] secrets_backend, else [secrets] backend."""
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend
    from airflow.sdk.configuration import ensure_secrets_loaded
    from airflow.sdk.execution_time.secrets import DEFAULT_SECRETS_SEARCH_PATH_WORKERS

    backends = ensure_secrets_loaded(default_backends=DEFAULT_SECRETS_SEARCH_PATH_WORKERS)
    assert isinstance(backends[0], AzureKeyVaultBackend)
    assert backends[0].vault_url == backend_kwargs(azure_env)["vault_url"]
    assert len(backends) == len(DEFAULT_SECRETS_SEARCH_PATH_WORKERS) + 1


# -- connections resolved through it (Azure SDK mocked) -------------------------------------------


def test_blob_connection_resolves_from_key_vault_with_managed_identity(key_vault, monkeypatch):
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    from airflow.sdk import BaseHook

    from hr_pipeline.runtime.settings import BLOB_CONN_ID

    connection = BaseHook.get_connection(BLOB_CONN_ID)
    assert connection.conn_type == "wasb"
    assert connection.host.startswith("https://")
    (client,) = key_vault.clients
    assert client.vault_url == "https://hr-pipeline-kv.vault.azure.net/"
    assert client.requested == ["airflow-connections-azure-blob"]
    # The Key Vault client itself authenticates with DefaultAzureCredential (managed identity).
    # No client id of its own: DefaultAzureCredential's managed identity reads AZURE_CLIENT_ID.
    assert key_vault.credentials == [{"managed_identity_client_id": "", "workload_identity_tenant_id": ""}]
    assert client.credential.kind == "DefaultAzureCredential"

    blob_credentials = []
    made = []

    def fake_blob_credential(**kwargs):
        blob_credentials.append(kwargs)
        made.append(SimpleNamespace(get_token=lambda *a, **k: None, kwargs=kwargs))
        return made[-1]

    monkeypatch.setattr(
        "airflow.providers.microsoft.azure.hooks.wasb.get_sync_default_azure_credential",
        fake_blob_credential,
    )
    service = WasbHook(wasb_conn_id=BLOB_CONN_ID).get_conn()
    secret = shipped_secrets()["airflow-connections-azure-blob"]
    assert service.url.rstrip("/") == secret["host"].rstrip("/")
    assert blob_credentials == [
        {
            "managed_identity_client_id": secret["extra"]["managed_identity_client_id"],
            "workload_identity_tenant_id": None,
        }
    ]
    assert service.credential is made[0]  # the managed identity's, not an account key
    assert not hasattr(service.credential, "account_key")


def test_warehouse_connection_resolves_from_key_vault_to_azure_sql(key_vault, monkeypatch):
    from hr_pipeline.warehouse.facade import Warehouse

    warehouse = Warehouse()
    assert warehouse.dialect == "mssql"
    assert key_vault.clients[0].requested == ["airflow-connections-warehouse"]

    calls = []
    monkeypatch.setattr("pymssql.connect", lambda **kwargs: calls.append(kwargs) or SimpleNamespace())
    warehouse.hook.get_conn()
    secret = shipped_secrets()["airflow-connections-warehouse"]
    (kwargs,) = calls
    assert kwargs["server"] == secret["host"]
    assert kwargs["user"] == secret["login"]
    assert kwargs["password"] == secret["password"]
    assert kwargs["database"] == secret["schema"]
    assert int(kwargs["port"]) == 1433


def test_unknown_connection_falls_through_key_vault(key_vault):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):
        BaseHook.get_connection("not_in_the_vault")
    assert key_vault.clients[0].requested == ["airflow-connections-not-in-the-vault"]


# -- Airflow's own secrets resolved from it (Azure SDK mocked) --------------------------------------


def test_jwt_secret_secret_key_and_fernet_key_come_from_key_vault(key_vault):
    """What the api-server, scheduler and workers read as [api_auth] jwt_secret, [api] secret_key
    and [core] fernet_key is the vault's value: one value for every container, in no file."""
    from airflow.configuration import conf
    from cryptography.fernet import Fernet

    for (section, key), secret in CONFIG_SECRETS.items():
        assert conf.get(section, key) == key_vault.vault[secret], (section, key)
    requested = [name for client in key_vault.clients for name in client.requested]
    assert set(requested) == set(CONFIG_SECRETS.values())
    # The Fernet key read that way encrypts as Airflow's own get_fernet() does.
    Fernet(conf.get("core", "fernet_key").encode())


def test_an_unreachable_vault_stops_airflow_reading_its_secrets(key_vault, monkeypatch):
    from airflow.configuration import conf
    from airflow.exceptions import AirflowConfigException

    def unreachable(self, name):
        raise ConnectionError("vault unreachable")

    monkeypatch.setattr(FakeSecretClient, "get_secret", unreachable)
    with pytest.raises(AirflowConfigException, match="alternative secrets backend"):
        conf.get("api_auth", "jwt_secret")
