"""No usable secret ships with the project (issue 15, "Production defaults that are safe").

Every file git tracks (``git ls-files``, read as it is in the working tree, so a change fails here
before it is committed) is scanned for:

1. values that were shipped as defaults and so are known to everyone: this project's former JWT
   secret and SQL Server ``sa`` password (docker-compose.yaml and .env.example until issue 15),
   the ``secret_key`` Airflow 1 shipped, and the ``sa`` passwords of Microsoft's SQL Server
   container examples;
2. a password written into a URL (``scheme://user:password@host``), such as the ``airflow:airflow``
   of Airflow's official compose file; ``${VAR...}`` references and ``<placeholders>`` are fine;
3. an empty Fernet key: ``AIRFLOW__CORE__FERNET_KEY`` / ``fernet_key`` set to nothing or defaulting
   to nothing (Airflow then stores connection passwords unencrypted). The one empty value allowed
   is ``AIRFLOW_FERNET_KEY=`` in .env.example, and only because docker-compose.yaml requires it
   (``${AIRFLOW_FERNET_KEY:?...}``: the stack does not start while it is empty);
4. the Azurite emulator's well-known account key, or ``UseDevelopmentStorage=true`` (which means
   that key), outside the allow-list below; any other Azure account key (``AccountKey=`` and 88
   base64 characters) or SAS signature anywhere; any private key block;
5. in the shipped configuration (docker-compose*.yaml, .env.example, Dockerfile, config/): every
   variable or JSON field whose name says secret, password, token, Fernet or account key is empty,
   a required ``${NAME:?...}``, a ``<placeholder>`` or, for the ``*_SECRET`` variables of
   airflow-azure.env, the *name* of a Key Vault secret; and authentication is never switched off
   (``SIMPLE_AUTH_MANAGER_ALL_ADMINS``);
6. the files that hold the generated secrets (``.env``, ``config/airflow.cfg``, Airflow's
   ``*.generated`` password files) are git-ignored and never tracked.

This file is the one place the known values are written (it is what looks for them), so it is
not scanned for items 1 and 4. config/compose/make_env.py refuses the same values in a .env by
their SHA-256 (tests/unit/test_docker_compose.py checks that its list covers this one).

Allow-list of the Azurite well-known key (decided for issue 15): it is not a secret but the
emulator's documented default, legitimate wherever the emulator runs only on this machine for
development or tests, and nowhere that describes a deployment:
  - tests/conftest.py: the test session's private Azurite on a free 127.0.0.1 port;
  - hr_pipeline/local/env.py, hr_pipeline/local/azurite.py, scripts/azurite.sh: the local stack's Azurite
    (started by scripts/azurite.sh on 127.0.0.1);
  - benchmarks/backup_bench.py: the benchmark's own Azurite on a free 127.0.0.1 port.
docker-compose.yaml is not on it: its Azurite runs with its own account and a generated key
(AZURITE_ACCOUNTS), and .env.example, config/ and README.md never carry the key.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import skip_or_fail

PROJECT_ROOT = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).resolve().relative_to(PROJECT_ROOT).as_posix()

# 1. Known values (see the module docstring). The first two shipped in this project.
KNOWN_DEFAULT_SECRETS = (
    "HrPipeline_Dev_2024!",  # docker-compose.yaml / .env.example sa password
    "change-me-shared-by-every-airflow-container",  # docker-compose.yaml / .env.example JWT secret
    "temporary_key",  # Airflow 1's [webserver] secret_key default
    "YourStrong@Passw0rd",  # Microsoft's SQL Server container examples
    "YourStrong!Passw0rd",
    "yourStrong(!)Password",
)

# 4. The Azurite emulator's well-known account key, and where it may appear.
AZURITE_WELL_KNOWN_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_KEY_ALLOWED = {
    "tests/conftest.py",
    "include/hr_pipeline/local/env.py",
    "include/hr_pipeline/local/azurite.py",
    "scripts/azurite.sh",
    "benchmarks/backup_bench.py",
}

_PASSWORD_IN_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?P<user>[^\s:/@'\"<>]*):(?P<password>[^\s@/'\"]+)@")
_EMPTY_FERNET = re.compile(
    r"""(?ix)
    (?:AIRFLOW__CORE__FERNET_KEY|\bfernet_key)["'\]]*[ \t]*[:=][ \t]*
    (?: ["']{2}                       # "" or ''
      | \$\{[A-Za-z_][A-Za-z0-9_]*:?-\}  # ${VAR:-} : defaults to empty
      | (?=[ \t]*(?:\#|$))            # nothing up to a comment or the end of the line
    )""",
    re.MULTILINE,
)
_AZURE_ACCOUNT_KEY = re.compile(r"AccountKey=(?P<key>[A-Za-z0-9+/]{86}==)")
_SAS_SIGNATURE = re.compile(r"[?&;]sig=[A-Za-z0-9%+/]{20,}")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")

SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|FERNET|ACCOUNT_KEY|API_KEY|PRIVATE_KEY", re.IGNORECASE
)


def tracked_files() -> dict[str, str]:
    """Path -> text of every tracked file (working tree), binary files left out."""
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        skip_or_fail("not a git checkout: the tracked files cannot be listed")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = {}
    for path in filter(None, listing.split("\0")):
        full = PROJECT_ROOT / path
        if not full.is_file():  # deleted in the working tree, not yet committed
            continue
        data = full.read_bytes()
        if b"\0" in data[:8192]:
            continue
        files[path] = data.decode("utf-8", errors="replace")
    return files


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    found = tracked_files()
    assert len(found) > 50
    assert "docker-compose.yaml" in found
    assert ".env.example" in found
    return found


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _shipped_config(path: str) -> bool:
    name = Path(path).name
    if path.endswith(".py"):  # a script (config/compose/make_env.py writes secrets, holds none)
        return False
    return (
        path == ".env.example"
        or path == "Dockerfile"
        or path.startswith("config/")
        or re.fullmatch(r"(docker-)?compose[\w.-]*\.ya?ml", name) is not None
    )


# -- 1 -----------------------------------------------------------------------------------------


def test_no_known_default_secret_in_any_tracked_file(files):
    found = [
        f"{path}:{_line(text, text.find(value))}: {value!r}"
        for path, text in files.items()
        if path != THIS_FILE
        for value in KNOWN_DEFAULT_SECRETS
        if value in text
    ]
    assert found == []


# -- 2 -----------------------------------------------------------------------------------------


def test_no_password_written_into_a_url(files):
    found = []
    for path, text in files.items():
        if path == THIS_FILE:
            continue
        for match in _PASSWORD_IN_URL.finditer(text):
            password = match["password"]
            if password.startswith("${") or (password.startswith("<") and password.endswith(">")):
                continue
            found.append(f"{path}:{_line(text, match.start())}: {match.group(0)}")
    assert found == []


def test_the_url_check_finds_what_it_is_for():
    assert (
        _PASSWORD_IN_URL.search("postgresql+psycopg2://airflow:airflow@postgres/airflow")["password"]
        == "airflow"
    )
    assert _PASSWORD_IN_URL.search("db+postgresql://u:p4ss@h/db")["password"] == "p4ss"
    ok = (
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "redis://:@redis:6379/0",
        "http://127.0.0.1:10000/hrpipeline",
    )
    assert not any(_PASSWORD_IN_URL.search(url) for url in ok)
    # A variable in place of the password is found, and then let through (it starts with "${").
    match = _PASSWORD_IN_URL.search("postgresql://airflow:${POSTGRES_PASSWORD:?unset}@postgres/x")
    assert match["password"] == "${POSTGRES_PASSWORD:?unset}"


# -- 3 -----------------------------------------------------------------------------------------


def test_no_empty_fernet_key(files):
    found = [
        f"{path}:{_line(text, match.start())}: {match.group(0).strip()}"
        for path, text in files.items()
        if path != THIS_FILE
        for match in _EMPTY_FERNET.finditer(text)
    ]
    assert found == []
    # The example's empty AIRFLOW_FERNET_KEY= is a value to fill in, which compose requires.
    assert re.search(r"^AIRFLOW_FERNET_KEY=$", files[".env.example"], re.M)
    assert re.search(
        r"AIRFLOW__CORE__FERNET_KEY: \$\{AIRFLOW_FERNET_KEY:\?[^}]+\}", files["docker-compose.yaml"]
    )


def test_the_fernet_check_finds_what_it_is_for():
    for bad in (
        "AIRFLOW__CORE__FERNET_KEY: ${AIRFLOW_FERNET_KEY:-}\n",
        "AIRFLOW__CORE__FERNET_KEY=\n",
        'env["AIRFLOW__CORE__FERNET_KEY"] = ""\n',
        "fernet_key = \n",
        "AIRFLOW__CORE__FERNET_KEY: ''  # none\n",
        "AIRFLOW__CORE__FERNET_KEY=${FERNET-}\n",
        '{"AIRFLOW__CORE__FERNET_KEY": ""}',
    ):
        assert _EMPTY_FERNET.search(bad), bad
    for good in (
        "AIRFLOW__CORE__FERNET_KEY: ${AIRFLOW_FERNET_KEY:?set it}\n",
        "AIRFLOW__CORE__FERNET_KEY_SECRET=fernet-key\n",
        "AIRFLOW_FERNET_KEY=\n",
        "fernet_key = x0S8Q7JgYt1Kc0Jm6jz0mV0i8o3Xb6zK5mH6c3fY8pE=\n",
    ):
        assert not _EMPTY_FERNET.search(good), good


# -- 4 -----------------------------------------------------------------------------------------


def test_the_azurite_well_known_key_only_where_the_emulator_is_local(files):
    needles = (AZURITE_WELL_KNOWN_KEY, AZURITE_WELL_KNOWN_KEY[:24], "UseDevelopmentStorage=true")
    found = sorted(
        {path for path, text in files.items() if any(needle.lower() in text.lower() for needle in needles)}
        - AZURITE_KEY_ALLOWED
        - {THIS_FILE}
    )
    assert found == [], f"the emulator's well-known key outside the allow-list: {found}"


def test_no_other_azure_key_sas_or_private_key(files):
    found = []
    for path, text in files.items():
        if path == THIS_FILE:
            continue
        for match in _AZURE_ACCOUNT_KEY.finditer(text):
            if match["key"] != AZURITE_WELL_KNOWN_KEY:  # a real account's key
                found.append(f"{path}:{_line(text, match.start())}: an Azure account key")
        for pattern, what in ((_SAS_SIGNATURE, "a SAS signature"), (_PRIVATE_KEY, "a private key")):
            for match in pattern.finditer(text):
                found.append(f"{path}:{_line(text, match.start())}: {what}")
    assert found == []


# -- 5 -----------------------------------------------------------------------------------------


_ASSIGNMENT = re.compile(  # NAME=value (env files), NAME: value (YAML)
    r"^[ \t]*(?:-[ \t]*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:=|:(?=[ \t]|$))[ \t]*"
    r"(?P<value>.*?)[ \t]*$",
    re.MULTILINE,
)
_JSON_FIELD = re.compile(r'"(?P<name>[A-Za-z_][A-Za-z0-9_-]*)"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)"')


def _harmless(name: str, value: str, path: str) -> bool:
    value = value.strip().strip("'\"")
    if (
        not value
        or value.startswith("#")
        or value.startswith("<")
        or re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}", value)
        or re.fullmatch(r"\$\$[A-Za-z_][A-Za-z0-9_]*", value)
    ):  # the container's own env
        return True
    # airflow-azure.env: AIRFLOW__<SECTION>__<KEY>_SECRET=<Key Vault secret name>
    if (
        path == "config/azure/airflow-azure.env"
        and name.endswith("_SECRET")
        and re.fullmatch(r"[a-z0-9-]+", value)
    ):
        return True
    if "SECRETS__BACKEND" in name or name.endswith("_FILE_NAME"):  # the backend's class, kwargs
        return True
    return False


def test_shipped_configuration_has_no_secret_values(files):
    found = []
    for path, text in files.items():
        if not _shipped_config(path):
            continue
        for pattern in (_ASSIGNMENT, _JSON_FIELD):
            for match in pattern.finditer(text):
                name, value = match["name"], match["value"]
                if pattern is _ASSIGNMENT and text[match.start() : match.end()].lstrip().startswith("#"):
                    continue
                if SECRET_NAME.search(name) and not _harmless(name, value, path):
                    found.append(f"{path}:{_line(text, match.start())}: {name} = {value[:40]!r}")
    assert found == []


def test_the_shipped_configuration_is_what_the_check_reads(files):
    """The check above sees the secrets where they are written (it would be vacuous otherwise)."""
    names = {match["name"] for match in _ASSIGNMENT.finditer(files[".env.example"])}
    assert {
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_FERNET_KEY",
        "MSSQL_SA_PASSWORD",
        "POSTGRES_PASSWORD",
        "AZURITE_ACCOUNT_KEY",
        "AIRFLOW_API_SECRET_KEY",
    } <= names
    compose = {match["name"] for match in _ASSIGNMENT.finditer(files["docker-compose.yaml"])}
    assert {"AIRFLOW__API_AUTH__JWT_SECRET", "MSSQL_SA_PASSWORD", "POSTGRES_PASSWORD"} <= compose
    keyvault = {
        match["name"] for match in _JSON_FIELD.finditer(files["config/azure/keyvault-secrets.example.json"])
    }
    assert "password" in keyvault
    assert "airflow-config-jwt-secret" in keyvault
    assert not _harmless("MSSQL_SA_PASSWORD", "${MSSQL_SA_PASSWORD:-Default1!}", "docker-compose.yaml")
    assert not _harmless("AIRFLOW_JWT_SECRET", "change-me", ".env.example")


def test_authentication_is_never_switched_off(files):
    for path, text in files.items():
        if _shipped_config(path):
            assert not re.search(r"SIMPLE_AUTH_MANAGER_ALL_ADMINS\s*[:=]\s*['\"]?true", text, re.I), path
    compose = yaml.safe_load(files["docker-compose.yaml"])
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    # Users and roles only: the password is generated by Airflow on the first start.
    assert re.fullmatch(r"(\w+:\w+)(,\w+:\w+)*", env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])


# -- 6 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [".env", "config/airflow.cfg"])
def test_files_with_generated_secrets_are_git_ignored(path):
    """.env: config/compose/make_env.py's secrets; config/airflow.cfg: written by docker compose's
    airflow-init into the mounted config/ folder, with a generated [api] secret_key."""
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0, f"{path} is not git-ignored"


def test_no_file_of_generated_secrets_is_tracked(files):
    tracked = [
        path
        for path in files
        if Path(path).name in (".env", "airflow.cfg", "airflow.env") or path.endswith(".generated")
    ]
    assert tracked == []
