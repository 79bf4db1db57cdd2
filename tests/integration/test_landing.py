"""Ingest on landing: the event trigger against Azurite, and the dispatcher's choice of tables."""

from __future__ import annotations

import asyncio

from hr_pipeline.storage.landing import IncomingFilesTrigger, marker_name, tables_of_events
from tests.integration.ingest_helpers import blob_names, drop_file, raw_container


def next_event(trigger, timeout: float = 3.0):
    """The trigger's first event, or None if it fires none within ``timeout`` seconds."""

    async def first():
        async for event in trigger.run():
            return event.payload

    async def bounded():
        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None

    return asyncio.run(bounded())


def test_files_landing_together_fire_one_event_and_are_reported_once(blob_store):
    trigger = IncomingFilesTrigger("jobs", raw_container(), poll_seconds=0.2)
    assert next_event(trigger, timeout=1) is None  # nothing waiting, nothing fired

    drop_file(blob_store, "jobs", "1,Nurse\n", "a.csv")
    drop_file(blob_store, "jobs", "2,Cook\n", "sub/b.csv")
    drop_file(blob_store, "departments", "1,Sales\n", "d.csv")  # another table's folder
    assert next_event(trigger) == {
        "table": "jobs",
        "files": ["incoming/jobs/a.csv", "incoming/jobs/sub/b.csv"],
    }

    # A restarted trigger does not report them again; a file sent again under a name is new.
    assert next_event(trigger, timeout=1) is None
    drop_file(blob_store, "jobs", "1,Nurse (corrected)\n", "a.csv")
    assert next_event(trigger) == {"table": "jobs", "files": ["incoming/jobs/a.csv"]}
    # the files themselves are untouched: the markers live beside them
    assert blob_names(blob_store, "incoming/jobs/") == ["incoming/jobs/a.csv", "incoming/jobs/sub/b.csv"]
    assert marker_name("incoming/jobs/a.csv") in blob_names(blob_store, "processing/landing/")


def test_the_trigger_serializes_to_its_own_class_path():
    trigger = IncomingFilesTrigger("jobs", "raw-data", poll_seconds=3)
    path, kwargs = trigger.serialize()
    assert path == "hr_pipeline.storage.landing.IncomingFilesTrigger"
    assert IncomingFilesTrigger(**kwargs).serialize() == (path, kwargs)


def test_tables_of_events_keeps_the_contract_order():
    class Landed:
        def __init__(self, name):
            self.name = name

    events = {Landed("incoming.hired_employees"): [], Landed("incoming.departments"): []}
    assert tables_of_events(events, ("departments", "jobs", "hired_employees")) == [
        "departments",
        "hired_employees",
    ]
