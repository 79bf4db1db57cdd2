"""Blob Storage: the store, the one blob layout, claims and the ingest lock, landing markers.

May import: contract, runtime.
"""
