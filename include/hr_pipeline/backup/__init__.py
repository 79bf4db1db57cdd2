"""The backup stage: AVRO backups, restores, the freshness check.

May import: storage, warehouse, contract, runtime; no other stage.
"""
