"""Run DAGs with dag.test() in a process of their own, for tests/integration/test_lineage.py.

``python tests/integration/lineage_runs.py DAG_ID[:CONF_JSON] ...`` parses each DAG from dags/ as the
scheduler would and runs it once; exits 1 when a run did not succeed.

A process of its own because the OpenLineage provider reads its configuration once per process:
its plugin registers the listener only when a transport is configured when plugins load, and its
settings (transport, extractors) are cached. The test's environment (AIRFLOW__OPENLINEAGE__*, the
connections) is this process's from the start.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from airflow.dag_processing.dagbag import DagBag

    failed = []
    for argument in argv:
        dag_id, _, conf = argument.partition(":")
        bag = DagBag(dag_folder=Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py")
        assert not bag.import_errors, bag.import_errors
        run = bag.dags[dag_id].test(run_conf=json.loads(conf) if conf else None)
        print(f"{dag_id}: {run.state}", flush=True)
        if str(run.state) not in ("success", "DagRunState.SUCCESS"):
            failed.append(dag_id)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
