"""Ingestion of the CSV extracts waiting under ``incoming/<table>/``: validate, load, archive.

The DAG runs these three steps as separate tasks, so each can be retried alone and may run on a
different worker. They hand over through Blob Storage, never through a worker's disk:

- ``validate_incoming`` streams every waiting file (in name order) through the contract's Great
  Expectations suite, chunk by chunk, and writes two files per extract to
  ``processing/<table>/<run>/``: the valid rows in canonical text form (CSV, zstd-compressed),
  and the rejected rows with their reasons. An unreadable file (not UTF-8 text, binary) is
  moved whole to ``rejected/``. Names are in ``hr_pipeline.storage.layout``.
- ``load_validated`` upserts the valid rows, in transactions of ``batch_size`` rows, in file order.
- ``archive_ingested`` moves each extract to ``archive/`` and its rejects to ``rejected/``, and
  writes the ledger. It first records what it is about to finish (the run's validations and
  loads) in an archive manifest: a run that dies part way is finished by the next run of the
  table (``hr_pipeline.storage.claims.adopt_leftovers``), so no rejects file and no ledger row is ever lost.

The load and the archive commit only while the run holds the table's ingest lock, checked inside
the warehouse's writer lock of the table (``hr_pipeline.storage.claims``: fencing).

Every file satisfies: rows loaded + rows rejected = data rows in the file (docs/CONTRACT.md).

Each task's entry function resolves the table name to its ``TableContract`` once; the
functions beneath it take the contract.

Modules: ``run`` (what the tasks hand each other), ``validate``, ``load``, ``archive``, and
``reader``, ``expectations`` and ``gx_tuning`` beneath them.

May import: storage, warehouse, contract, runtime; no other stage.
"""
