"""Great Expectations as this pipeline runs it: the one module that relies on how GX works inside.

Everything here was written for ``GX_VERSION`` and is checked against the installed version
when validation starts (``check_gx_version``): on another version it fails loudly, naming this
module, rather than run with assumptions nobody checked. GX's own code is never changed; this
module configures it and adds expectation classes of its own (subclasses, registered by GX like
any custom expectation).

- ``HASH_THRESHOLD = 0``: GX fingerprints every pandas batch (an md5 over the whole frame) for
  batch metadata that nothing here reads: most of its time per row on a large chunk.
- The expectations the suite uses are subclasses whose ``configuration`` is built once per object
  instead of on each read: GX builds the expectation objects of a suite afresh for every
  validation run and reads that property many times per expectation and run, a large share of
  GX's fixed cost per run (figures in benchmarks/RESULTS.md). The objects are not changed during a run;
  ``test_gx_tuning`` holds the results equal to GX's own expectations.
- Its INFO logging is silenced: most of the lines of a task's log.
"""

from __future__ import annotations

import logging
from typing import Any

GX_VERSION = "1.24.1"

_CONFIGURATIONS: dict[int, tuple[Any, Any]] = {}
_CONFIGURATIONS_KEPT = 4096  # objects whose configuration is kept: a few runs' worth


def check_gx_version() -> None:
    import great_expectations as gx

    if gx.__version__ != GX_VERSION:
        raise RuntimeError(
            f"hr_pipeline.ingest.gx_tuning was written and measured for great_expectations {GX_VERSION}, "
            f"but {gx.__version__} is installed: check what it relies on (its docstring) against "
            "that version, run tests/unit/test_gx_tuning.py, then update GX_VERSION"
        )


def configure() -> None:
    """GX set up for validation runs in this process."""
    check_gx_version()
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


class _ConfigurationBuiltOnce:
    """``configuration`` built on first read and kept for the object's life (see the module)."""

    @property
    def configuration(self):
        entry = _CONFIGURATIONS.get(id(self))
        if entry is None or entry[0] is not self:  # keyed by id, checked by identity
            if len(_CONFIGURATIONS) >= _CONFIGURATIONS_KEPT:
                _CONFIGURATIONS.clear()
            entry = _CONFIGURATIONS[id(self)] = (self, super().configuration)
        return entry[1]


def expectation_classes() -> dict[str, type]:
    """The suite's expectation classes by the name of the GX expectation they stand for."""
    global _CLASSES
    if _CLASSES is None:
        import great_expectations.expectations as gxe

        class HrExpectColumnValuesToNotBeNull(_ConfigurationBuiltOnce, gxe.ExpectColumnValuesToNotBeNull):
            pass

        class HrExpectColumnValuesToBeInSet(_ConfigurationBuiltOnce, gxe.ExpectColumnValuesToBeInSet):
            pass

        class HrExpectColumnValuesToBeBetween(_ConfigurationBuiltOnce, gxe.ExpectColumnValuesToBeBetween):
            pass

        class HrExpectColumnValueLengthsToBeBetween(
            _ConfigurationBuiltOnce, gxe.ExpectColumnValueLengthsToBeBetween
        ):
            pass

        _CLASSES = {
            "ExpectColumnValuesToNotBeNull": HrExpectColumnValuesToNotBeNull,
            "ExpectColumnValuesToBeInSet": HrExpectColumnValuesToBeInSet,
            "ExpectColumnValuesToBeBetween": HrExpectColumnValuesToBeBetween,
            "ExpectColumnValueLengthsToBeBetween": HrExpectColumnValueLengthsToBeBetween,
        }
    return _CLASSES


_CLASSES: dict[str, type] | None = None
