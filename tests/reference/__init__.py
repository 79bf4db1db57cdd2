"""An independent reference of the data contract, and a generator of messy extracts.

Plain Python (stdlib only) and no import from ``hr_pipeline``: the differential tests hold the
pipeline's outputs against what this package computes from the same bytes.
"""
