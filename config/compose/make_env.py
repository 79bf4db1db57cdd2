"""Write docker compose's ``.env`` with new random secrets (standard library only; run on the host).

    python3 config/compose/make_env.py [--env-file .env] [--template .env.example]

No secret ships with the project: ``docker-compose.yaml`` reads each one as ``${NAME:?...}``, so
``docker compose`` refuses to start until all of them are set. This script sets them:

- no ``.env`` yet: copies ``.env.example`` and fills in every secret with a new random value;
- ``.env`` exists: fills in only the secrets that are missing or empty and never changes one that
  is set (the databases keep the passwords of their first start, and data encrypted with a Fernet
  key needs that key), then checks every secret: a value the project or Airflow once shipped as a
  default, or one its service refuses (a weak ``sa`` password, a malformed Fernet or account key),
  is reported and nothing is written (exit status 1).

Placeholders ``<NAME>`` in other lines (the host-side connections of ``.env.example``) become the
value of secret ``NAME``. The file is written with mode 0600 and is git-ignored. Only the secrets'
names are printed, never their values.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def _mssql_password() -> str:
    while True:  # SQL Server's policy: 3 of upper, lower, digits, symbols; a letter first
        value = secrets.token_urlsafe(24)
        if (
            value[0].isalpha()
            and any(c.isupper() for c in value)
            and any(c.islower() for c in value)
            and any(c.isdigit() for c in value)
        ):
            return value


GENERATORS = {
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "MSSQL_SA_PASSWORD": _mssql_password,
    "AZURITE_ACCOUNT_KEY": lambda: base64.b64encode(os.urandom(64)).decode(),
}
SECRET_NAMES = tuple(GENERATORS)

# SHA-256 of values that were shipped as defaults somewhere, so are known to everyone (a .env
# copied from an older .env.example still holds some): this project's former JWT secret and sa
# password, the metadata database password of Airflow's official compose file ("airflow"), the
# secret_key Airflow 1 shipped, the Azurite emulator's well-known account key, and the sa passwords
# of Microsoft's SQL Server container examples. Hashes, not the
# values, so that tests/unit/test_no_default_secrets.py finds none of them in the shipped files
# (that test checks this set covers its list).
KNOWN_DEFAULT_SHA256 = frozenset(
    {
        "bf8ae379c9c962484b930afa3113fa17bf026a796e78d54e7839eab3722a58fb",
        "66b6f324d481eecffdf15b1453901a1653741627e6f8fa9ac9cb97f7346e9bad",
        "16df48936f837b402448fbbff41aaba51279da9c9b66d4b39412ab9d8237eedd",
        "e0bfb701592614dd14e92d23039fe84ec9951167b183ff9c7d446aaa29429450",
        "0011cc25eb4320717494d2703e8cba85743e71b500283c21c8b88147992f9059",
        "aa28c9af739fd0e124bea90eaa3076226a16fb21c26cf80db821a341e4601fc5",
        "877bb551b01cd214877f32fa6a2bb1e8c0cebc720a75cb014f9584d110e063d9",
        "1c3d6188abe600bce2404e8c462e117cd621a7b0b897173b6c0c187fa01d9e1b",
    }
)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _base64_bytes(value: str, altchars: bytes | None = None) -> bytes | None:
    try:
        return base64.b64decode(value.encode(), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def _common_problems(name: str, value: str) -> list[str]:
    if not value:
        return [f"{name} is empty"]
    found = []
    if sha256(value) in KNOWN_DEFAULT_SHA256:
        found.append(f"{name} is a publicly known default value: set a new random one")
    if any(c in value for c in "'\"\\$` #"):
        found.append(
            f"{name} contains a quote, backslash, $, backtick, # or space "
            f"(it is written into .env, JSON, URLs and shell commands)"
        )
    return found


def _long_secret(name: str):
    def check(value: str) -> str | None:
        return f"{name} is shorter than 32 characters" if len(value) < 32 else None

    return check


def _fernet_problem(value: str) -> str | None:
    key = _base64_bytes(value, altchars=b"-_")
    if key is None or len(key) != 32:
        return "AIRFLOW_FERNET_KEY is not a Fernet key (url-safe base64 of 32 bytes)"
    return None


def _postgres_problem(value: str) -> str | None:
    if len(value) < 16 or not _URL_SAFE.match(value):
        return (
            "POSTGRES_PASSWORD needs 16+ characters from letters, digits, - and _ (it is written into a URL)"
        )
    return None


def _sql_server_problem(value: str) -> str | None:
    classes = sum(
        any(test(c) for c in value)
        for test in (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    )
    if len(value) < 8 or classes < 3:
        return (
            "MSSQL_SA_PASSWORD: SQL Server wants 8+ characters from 3 of upper case, "
            "lower case, digits, symbols"
        )
    return None


def _azurite_key_problem(value: str) -> str | None:
    key = _base64_bytes(value)
    if key is None or len(key) < 32 or ":" in value or ";" in value:
        return "AZURITE_ACCOUNT_KEY is not the base64 of 32+ random bytes"
    return None


# The form each secret must have, beyond being set, new and safe to write anywhere.
_FORM_PROBLEMS = {
    "AIRFLOW_JWT_SECRET": _long_secret("AIRFLOW_JWT_SECRET"),
    "AIRFLOW_API_SECRET_KEY": _long_secret("AIRFLOW_API_SECRET_KEY"),
    "AIRFLOW_FERNET_KEY": _fernet_problem,
    "POSTGRES_PASSWORD": _postgres_problem,
    "MSSQL_SA_PASSWORD": _sql_server_problem,
    "AZURITE_ACCOUNT_KEY": _azurite_key_problem,
}


def problems(values: dict[str, str]) -> list[str]:
    """What is wrong with the secrets in ``values`` (all of SECRET_NAMES expected set)."""
    found = []
    for name in SECRET_NAMES:
        found += _common_problems(name, values.get(name, ""))
    for name, form_problem in _FORM_PROBLEMS.items():
        if values.get(name) and (problem := form_problem(values[name])) is not None:
            found.append(problem)
    return found


_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_values(lines: list[str]) -> dict[str, str]:
    values = {}
    for line in lines:
        match = _ASSIGNMENT.match(line.strip())
        if match:
            values[match["name"]] = _unquote(match["value"])
    return values


def fill(lines: list[str]) -> tuple[list[str], list[str]]:
    """``lines`` with every missing or empty secret generated and placeholders substituted;
    the names generated."""
    existing = read_values(lines)
    generated = [name for name in SECRET_NAMES if not existing.get(name)]
    values = {**existing, **{name: GENERATORS[name]() for name in generated}}

    result, seen = [], set()
    for line in lines:
        match = _ASSIGNMENT.match(line.strip())
        if match and match["name"] in SECRET_NAMES:
            seen.add(match["name"])
            if match["name"] in generated:
                line = f"{match['name']}={values[match['name']]}"
        elif match:
            for name in SECRET_NAMES:
                line = line.replace(f"<{name}>", values[name])
        result.append(line)
    missing = [name for name in SECRET_NAMES if name not in seen]
    if missing:
        result += ["", "# Secrets added by config/compose/make_env.py"]
        result += [f"{name}={values[name]}" for name in missing]
    return result, generated


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, atomically."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, default=PROJECT_ROOT / ".env")
    parser.add_argument("--template", type=Path, default=PROJECT_ROOT / ".env.example")
    options = parser.parse_args(argv)

    source = options.env_file if options.env_file.exists() else options.template
    lines, generated = fill(source.read_text().splitlines())
    found = problems(read_values(lines))
    if found:
        print(f"{options.env_file}: not written, fix these first:", file=sys.stderr)
        for problem in found:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    write_private(options.env_file, "\n".join(lines) + "\n")
    kept = [name for name in SECRET_NAMES if name not in generated]
    print(
        f"{options.env_file}: generated {', '.join(generated) or 'nothing'}"
        + (f"; kept {', '.join(kept)}" if kept else "")
        + (f" (from {source.name})" if source != options.env_file else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
