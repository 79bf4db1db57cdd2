def test_warehouses_create_tables(warehouse):
    assert warehouse.row_count("departments") == 0
    assert warehouse.key_values("jobs") == set()


def test_blob_store_roundtrip(blob_store):
    import os

    container = os.environ["AZURE_BLOB_CONTAINER_RAW_DATA"]
    blob_store.upload_bytes(container, "incoming/jobs/a.csv", b"1,x\n")
    assert [b.name for b in blob_store.list(container, "incoming/")] == ["incoming/jobs/a.csv"]
    blob_store.move(container, "incoming/jobs/a.csv", "archive/jobs/2026-01-01/a.csv")
    assert [b.name for b in blob_store.list(container)] == ["archive/jobs/2026-01-01/a.csv"]
