"""hr_pipeline.ingest.gx_tuning: GX configured, never changed, and results equal to GX's own."""

from __future__ import annotations

import pytest

from hr_pipeline.ingest import gx_tuning
from tests.unit.test_validation_rules import MIXED, reasons_of, validate


def test_the_tuned_expectations_give_gx_s_own_results(monkeypatch):
    """The suite's expectation classes (configuration built once per object) give the same valid
    rows and the same reasons, rule by rule, as GX's own expectation classes."""
    import great_expectations.expectations as gxe

    tuned = validate(*MIXED, duplicates={7: 2})
    own = {name: getattr(gxe, name) for name in gx_tuning.expectation_classes()}
    monkeypatch.setattr(gx_tuning, "expectation_classes", lambda: own)
    plain = validate(*MIXED, duplicates={7: 2})
    assert (
        tuned.valid_rows
        == plain.valid_rows
        == [
            ("1", "Ann", "2021-01-01T00:00:00.000000Z", "1", "10"),
            ("5", "Cy", "2021-06-30T23:59:59.500000Z", "2", "11"),
        ]
    )
    assert reasons_of(tuned) == reasons_of(plain)
    assert len(reasons_of(plain)) == 5
    assert len(reasons_of(plain)[3]) == 4


def test_gx_s_own_classes_are_left_as_they_are():
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__["configuration"]
    validate(*MIXED)
    assert Expectation.__dict__["configuration"] is original
    for name, tuned in gx_tuning.expectation_classes().items():
        assert tuned.__name__ == f"Hr{name}"
        assert "configuration" not in vars(tuned)


def test_another_gx_version_fails_loudly(monkeypatch):
    import great_expectations as gx

    monkeypatch.setattr(gx, "__version__", "1.99.0")
    with pytest.raises(RuntimeError, match="written and measured for great_expectations 1.24.1, but 1.99.0"):
        gx_tuning.check_gx_version()
