"""The production set and the development set stay apart, and the image runs what CI tests."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT

DEVELOPMENT_ONLY = {
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "ruff",
    "import-linter",
    "playwright",
    "aiosmtpd",
}


def pins(name: str) -> dict[str, str]:
    """package -> version of every ``name==version`` line of a requirements or lock file."""
    found = {}
    for line in (PROJECT_ROOT / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return found


def test_no_development_package_is_in_the_runtime_set():
    runtime, locked = pins("requirements.txt"), pins("constraints-runtime.txt")
    assert DEVELOPMENT_ONLY.isdisjoint(runtime), DEVELOPMENT_ONLY & set(runtime)
    assert DEVELOPMENT_ONLY.isdisjoint(locked), DEVELOPMENT_ONLY & set(locked)


def test_every_development_package_is_pinned_for_development():
    assert set(pins("requirements-dev.txt")) >= DEVELOPMENT_ONLY


def test_the_runtime_lock_is_the_development_lock_less_the_tools():
    runtime, development = pins("constraints-runtime.txt"), pins("constraints.txt")
    differing = {
        name: (version, development.get(name))
        for name, version in runtime.items()
        if development.get(name) != version
    }
    assert differing == {}, "the image must run the versions CI tests"
    assert runtime["apache-airflow"] == "3.3.2"


def test_every_top_level_pin_is_the_locked_version():
    for requirements, lock in (
        ("requirements.txt", "constraints-runtime.txt"),
        ("requirements-dev.txt", "constraints.txt"),
    ):
        locked = pins(lock)
        for name, version in pins(requirements).items():
            assert locked.get(name) == version, (
                f"{requirements}: {name}=={version}, {lock}: {locked.get(name)}"
            )
