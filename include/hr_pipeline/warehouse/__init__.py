"""The warehouse: the facade over SQLite, PostgreSQL and SQL Server, their dialect adapters, typed errors, the ingest ledger.

May import: contract, runtime.
"""
