"""Landing-to-published latency on the local stack, beside a floor measured in the same run.

The stack is the one the stack tests start (``hr_pipeline.local.stack``: api-server, scheduler,
dag-processor, triggerer, Azurite; LocalExecutor, SQLite metadata) with a fresh PostgreSQL
warehouse and every DAG unpaused, as ``make up`` has them. A second DAG bundle loads
``benchmarks/latency_floor/``: DAGs of the pipeline's shape whose tasks do nothing (see that file),
triggered the same way, by files landing in a container of their own.

- **project**: from the upload of the three real extracts (``include/sample_data``) under
  ``incoming/<table>/`` until the metric tables hold the new numbers (the warehouse polled every
  0.25 s: ``hires_by_quarter`` counts the 1,929 loaded hires, ``quarterly_hires_2021`` and
  ``departments_above_mean_2021`` have rows).
- **floor**: from the upload of the same three files into the floor's container until a run of
  ``latency_floor_publish`` created after the last floor ``load`` ended (so it consumed that load's
  asset event) succeeded (the REST API polled every 0.25 s).

One warm-up round of each, then ``HR_BENCH_LATENCY_ROUNDS`` (default 5) interleaved rounds
(floor, project; the warehouse's tables and metric tables emptied before each project round);
each figure is the median of its rounds, printed with their spread (lowest and highest).

Then the runs' timelines (from the REST API) say where the time went. Polling that this bench
lowers through the environment (both sides alike): ``HR_LANDING_POLL_SECONDS`` (the landing
trigger's listing interval; ``HR_BENCH_LANDING_POLL``, default 1 s here, 10 s by default).
Target: the project's median within 1.25x of the floor's.

The task start-up of each validate and load on the stack (from its process's start to its first
line of work, as the task logs it: ``hr_pipeline.runtime.startup``) is read from the task logs of
every round, the warm-up's included; its median is a figure of its own (target: under 1 s).

``HR_BENCH_OPENLINEAGE=1`` runs the stack with the OpenLineage provider emitting (file transport,
``hr_pipeline.ops.lineage.HrAssetsExtractor``) and prints what the pipeline's events named: lineage
checked on the real stack, in the executor's task processes, and its cost seen in the figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import fresh_postgres_database, postgres_dsn, report, report_limit

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "include" / "sample_data"
FLOOR_DIR = Path(__file__).resolve().parent / "latency_floor"
FLOOR_CONTAINER = "latency-floor"
TABLES = ("departments", "jobs", "hired_employees")
LOADED_HIRES = 1929  # of the real hired_employees extract's 1,999 rows
TARGET_RATIO = 1.25
START_UP_LIMIT_SECONDS = 1.0
POLL = 0.25
TIMEOUT = float(os.environ.get("HR_BENCH_LATENCY_TIMEOUT", "900"))
LANDING_POLL = os.environ.get("HR_BENCH_LANDING_POLL", "1")
ROUNDS = max(5, int(os.environ.get("HR_BENCH_LATENCY_ROUNDS", "5")))
# HR_BENCH_OPENLINEAGE=1: the stack emits OpenLineage events (file transport, the project's
# extractor), and the bench says how many and what the pipeline's events named.
OPENLINEAGE = os.environ.get("HR_BENCH_OPENLINEAGE", "") == "1"

REAL_DAGS = ("ingest_on_landing", "ingest_table", "publish_metrics")
FLOOR_DAGS = ("latency_floor_on_landing", "latency_floor_ingest", "latency_floor_publish")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stack_modules():
    from hr_pipeline.local import env as local_env
    from hr_pipeline.local import stack

    return stack, local_env


def _bundles() -> str:
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    return json.dumps(
        [
            {"name": "dags-folder", "classpath": local, "kwargs": {}},
            {"name": "latency-floor", "classpath": local, "kwargs": {"path": str(FLOOR_DIR)}},
        ]
    )


def _parse(instant: str | None) -> datetime | None:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")) if instant else None


def _openlineage_env(state_dir: Path) -> dict[str, str]:
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(state_dir / "openlineage.jsonl"), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__EXTRACTORS": "hr_pipeline.ops.lineage.HrAssetsExtractor",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "hr-bench",
    }


def _print_lineage(state_dir: Path) -> None:
    from hr_pipeline.ops.lineage import read_events

    path = state_dir / "openlineage.jsonl"
    events = read_events(path) if path.exists() else []
    print(f"  OpenLineage: {len(events)} events in {path}")
    for job in ("ingest_table.load", "publish_metrics.record_published_row_counts"):
        done = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]
        if done:
            last = done[-1]
            print(
                f"    {job}: in {[d['name'] for d in last['inputs']]} out {[d['name'] for d in last['outputs']]}"
            )


class Bench:
    def __init__(self, stack, api, env: dict, database: str):
        from azure.storage.blob import BlobServiceClient

        self.stack, self.api, self.env, self.database = stack, api, env, database
        connection_string = json.loads(env["AIRFLOW_CONN_AZURE_BLOB"])["extra"]["connection_string"]
        self.blobs = BlobServiceClient.from_connection_string(connection_string)

    def upload(self, container: str, tag: str) -> None:
        client = self.blobs.get_container_client(container)
        for table in TABLES:
            client.upload_blob(
                f"incoming/{table}/{tag}-{table}.csv",
                (SAMPLE_DATA / f"{table}.csv").read_bytes(),
                overwrite=True,
            )

    def runs(self, dag_id: str, after: datetime) -> list[dict]:
        runs = self.api.json(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns",
            params={"order_by": "run_after", "limit": 50, "run_after_gte": after.isoformat()},
        )["dag_runs"]
        return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api.task_instances(dag_id, run_id)

    # -- the two measurements ---------------------------------------------------------------
    def metrics_published(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(postgres_dsn(self.database), autocommit=True) as conn:
                hires = conn.execute(
                    "SELECT COALESCE(SUM(q1 + q2 + q3 + q4), 0) FROM hires_by_quarter"
                ).fetchone()[0]
                quarterly = conn.execute("SELECT count(*) FROM quarterly_hires_2021").fetchone()[0]
                above = conn.execute("SELECT count(*) FROM departments_above_mean_2021").fetchone()[0]
        except psycopg.Error:
            return False  # not published yet (no table)
        return hires == LOADED_HIRES and quarterly > 0 and above > 0

    def floor_published(self, after: datetime) -> bool:
        ingests = self.runs("latency_floor_ingest", after)
        if len(ingests) < 3 or any(run["state"] != "success" for run in ingests):
            return False
        load_ends = []
        for run in ingests:
            ends = [
                _parse(ti["end_date"])
                for ti in self.task_instances("latency_floor_ingest", run["dag_run_id"])
                if ti["task_id"] == "load"
            ]
            if not ends or ends[0] is None:
                return False
            load_ends.append(ends[0])
        last_load = max(load_ends)
        # The run created after the last load's asset event (so it consumed it), as the project's
        # numbers are new only once the publish that read the last table's rows has swapped.
        return any(
            run["state"] == "success" and run["queued_at"] and _parse(run["queued_at"]) >= last_load
            for run in self.runs("latency_floor_publish", after)
        )

    def measure(self, label: str, container: str, done) -> tuple[float, datetime, datetime]:
        tag = f"{label}-{int(time.time())}"
        uploaded_at = datetime.now(timezone.utc)
        started = time.monotonic()
        self.upload(container, tag)
        deadline = started + TIMEOUT
        while time.monotonic() < deadline:
            if done(uploaded_at):
                seconds = time.monotonic() - started
                print(f"  {label:<10} {seconds:7.1f} s from upload to published", flush=True)
                return seconds, uploaded_at, datetime.now(timezone.utc)
            time.sleep(POLL)
        raise RuntimeError(
            f"{label}: not published {TIMEOUT:.0f} s after the upload (logs: {self.stack.config.logs_dir})"
        )

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Until no run of the pipeline's or the floor's DAGs is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [
                dag_id
                for dag_id in REAL_DAGS + FLOOR_DAGS
                if self.api.json(
                    "GET",
                    f"/api/v2/dags/{dag_id}/dagRuns",
                    params={"state": ["queued", "running"], "limit": 1},
                )["total_entries"]
            ]
            if not busy:
                return
            time.sleep(POLL)
        raise RuntimeError(f"runs still in progress after {timeout:.0f} s: {busy}")

    def reset_warehouse(self) -> None:
        """Empty the tables and the metric tables, so that the next round's numbers are new."""
        import psycopg

        from hr_pipeline.metrics import METRIC_NAMES

        with psycopg.connect(postgres_dsn(self.database), autocommit=True) as conn:
            existing = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
            }
            names = [n for n in (*TABLES, *METRIC_NAMES) if n in existing]
            if names:
                conn.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in names))

    # -- where the time went ------------------------------------------------------------------
    def timeline(self, dag_ids: tuple[str, ...], uploaded_at: datetime, finished_at: datetime) -> None:
        """The runs of one round (started between its upload and the moment it was published)
        and the duration of each of their tasks."""
        rows = []
        task_seconds: dict[str, list[float]] = {}
        for dag_id in dag_ids:
            for run in self.runs(dag_id, uploaded_at):
                if _parse(run["run_after"]) > finished_at:
                    continue
                queued, start, end = (_parse(run.get(k)) for k in ("queued_at", "start_date", "end_date"))
                table = (run.get("conf") or {}).get("table_name", "")
                rows.append((queued or start, f"{dag_id} {table}".strip(), queued, start, end))
                for ti in self.task_instances(dag_id, run["dag_run_id"]):
                    if ti["start_date"] and ti["end_date"]:
                        seconds = (_parse(ti["end_date"]) - _parse(ti["start_date"])).total_seconds()
                        task_seconds.setdefault(f"{dag_id}.{ti['task_id']}", []).append(seconds)

        def at(instant):
            return f"{(instant - uploaded_at).total_seconds():6.1f}" if instant else "     -"

        print("    run (s after upload)                          queued  start    end", flush=True)
        for _, name, queued, start, end in sorted(rows, key=lambda r: r[0] or uploaded_at):
            print(f"    {name:<44} {at(queued)} {at(start)} {at(end)}")
        print("    task (seconds from start to end, each run)")
        for name, seconds in task_seconds.items():
            print(f"    {name:<56} " + " ".join(f"{s:5.1f}" for s in seconds))


def _rounds(bench: Bench, env: dict) -> tuple[list, list]:
    """A warm-up round of each (the first task processes of a fresh stack compile and cache),
    then ROUNDS interleaved rounds: (floor rounds, project rounds), each (seconds, upload, end)."""
    floors, projects = [], []
    for round_ in range(ROUNDS + 1):
        floor = bench.measure(f"floor-{round_}", FLOOR_CONTAINER, bench.floor_published)
        bench.wait_idle()
        bench.reset_warehouse()
        project = bench.measure(
            f"project-{round_}",
            env["AZURE_BLOB_CONTAINER_RAW_DATA"],
            lambda _after: bench.metrics_published(),
        )
        bench.wait_idle()
        if round_:
            floors.append(floor)
            projects.append(project)
    return floors, projects


def _median_round(rounds: list) -> tuple:
    return sorted(rounds)[len(rounds) // 2]


def _print_timelines(bench: Bench, floors: list, projects: list) -> None:
    print("  project timeline (its median round):")
    bench.timeline(REAL_DAGS, *_median_round(projects)[1:])
    print("  floor timeline (its median round):")
    bench.timeline(FLOOR_DAGS, *_median_round(floors)[1:])
    ratios = [p[0] / f[0] for f, p in zip(floors, projects)]
    print(
        f"  measured rounds: project {', '.join(f'{m[0]:.1f}' for m in projects)} s; "
        f"floor {', '.join(f'{m[0]:.1f}' for m in floors)} s; "
        f"ratio per round {', '.join(f'{r:.2f}' for r in ratios)} (warm-up rounds not counted)"
    )


def _spread(rounds: list) -> str:
    seconds = [m[0] for m in rounds]
    return f"{min(seconds):.1f}-{max(seconds):.1f} s"


_START_UP_LINE = re.compile(r"(validate|load): task start-up ([0-9.]+) s")


def task_start_ups(state_dir: Path) -> dict[str, list[float]]:
    """The start-ups ingest_table's validate and load tasks logged on the stack, by task."""
    found: dict[str, list[float]] = {"validate": [], "load": []}
    for path in state_dir.rglob("*.log"):
        if "dag_id=ingest_table" not in str(path):
            continue
        for task, seconds in _START_UP_LINE.findall(path.read_text(errors="replace")):
            found[task].append(float(seconds))
    return found


def _report(floors: list, projects: list, state_dir: Path) -> bool:
    floor_median = statistics.median(m[0] for m in floors)
    project_median = statistics.median(m[0] for m in projects)
    met = report(
        f"landing to published, median of {len(projects)} rounds"
        f" (project {_spread(projects)}, floor {_spread(floors)})",
        project_median,
        "same-shape DAGs doing nothing",
        floor_median,
        target_ratio=TARGET_RATIO,
    )
    for task, seconds in task_start_ups(state_dir).items():
        if not seconds:
            print(f"  no start-up line logged by ingest_table's {task} tasks under {state_dir}")
            met = False
            continue
        print(f"  {task} start-ups on the stack: {', '.join(f'{s:.2f}' for s in sorted(seconds))} s")
        met &= report_limit(
            f"task start-up on the stack: {task}, median of {len(seconds)}",
            statistics.median(seconds),
            "s",
            START_UP_LIMIT_SECONDS,
            decimals=2,
        )
    return met


def main() -> bool:
    stack_driver, local_env = _stack_modules()
    if shutil.which("node") is None:
        print("latency_bench: Node.js is not installed (Azurite cannot run)")
        return False
    state_dir = Path(tempfile.mkdtemp(prefix="hr-latency-bench-"))
    with fresh_postgres_database() as database:
        config = stack_driver.StackConfig(
            state_dir=state_dir,
            api_port=_free_port(),
            blob_port=_free_port(),
            log_server_port=_free_port(),
            trigger_log_server_port=_free_port(),
            warehouse_uri=local_env.postgres_warehouse_connection(database),
            extra_env={
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # as `make up`
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": _bundles(),
                "HR_LANDING_POLL_SECONDS": LANDING_POLL,
                **(_openlineage_env(state_dir) if OPENLINEAGE else {}),
            },
        )
        stack = stack_driver.Stack(config)
        api = None
        try:
            started = stack.start(timeout=600)
            stack.wait_healthy(timeout=300)
            api = stack.api()
            api.wait_for_dags(REAL_DAGS + FLOOR_DAGS, timeout=600)
            for real, floor in (
                ("ingest_table", "latency_floor_ingest"),
                ("publish_metrics", "latency_floor_publish"),
            ):
                counts = [len(api.json("GET", f"/api/v2/dags/{d}/tasks")["tasks"]) for d in (real, floor)]
                assert counts[0] == counts[1], f"{floor} has {counts[1]} tasks, {real} {counts[0]}"
            env = stack.process_env()
            stack.ensure_containers(env)
            bench = Bench(stack, api, env, database)
            try:
                bench.blobs.create_container(FLOOR_CONTAINER)
            except Exception:  # noqa: BLE001 - exists
                pass
            print(f"  stack up in {started:.0f} s; landing poll {LANDING_POLL} s", flush=True)
            floors, projects = _rounds(bench, env)
            _print_timelines(bench, floors, projects)
            if OPENLINEAGE:
                _print_lineage(state_dir)
            return _report(floors, projects, state_dir)
        finally:
            if api is not None:
                api.close()
            stack.stop()
            if not os.environ.get("HR_KEEP_STACK_STATE"):
                shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
