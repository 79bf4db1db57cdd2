"""The data contract: each table's columns, types and rules (one source for DDL, AVRO, GX suites and params), field values, instants.

Imports nothing else of the package.
"""
