"""`make demo [DATA=dir]`: the whole pipeline once, on the local emulator and SQLite warehouse.

Uploads ``<dir>/departments.csv``, ``jobs.csv`` and ``hired_employees.csv`` to
``incoming/<table>/`` in Azurite, runs ``ingest_table`` for each table in that order and then
``publish_metrics`` (with ``dag.test()``: the real DAGs, in this process, no scheduler needed),
and prints, about a screen long: one line per step, the rows read / loaded / rejected per table
and where the rejects are, the departments above the 2021 mean, the first rows of the quarterly
2021 table with the SQL for the rest, and where the warehouse and the CLI environment are.

Everything the frameworks write (Airflow, Great Expectations, the task logs of ``dag.test()``)
goes to ``<state>/logs/demo.log``, never to the console. Exit status: 0 when every run
succeeded; 1, naming the table and the reason, when one failed (the other tables still run, the
metrics are not published); 2 when an extract is missing.

Azurite: this checkout's running emulator (verified: pid file, live pid, its data folder, its
port) is reused and left running; otherwise the demo starts one on a port verified to be its own
(``AZURITE_BLOB_PORT``, else 10000 when free, else a free port) and stops it at the end.

State is in ``.local/`` (``HR_LOCAL_DIR`` moves it; the tests use that): ``warehouse.db``, the
Airflow home, the emulator's data, ``logs/`` and ``airflow.env`` for the CLI. Each run starts from
empty tables (and no file left waiting by an earlier one), so the tables hold exactly what DATA
holds; archives, rejects and the ingest ledger are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from hr_pipeline.local import PROJECT_ROOT, azurite, ports, state_dir
from hr_pipeline.local import env as local_env
from hr_pipeline.runtime.progress import PROGRESS_RECORD_FLAG

ROOT = PROJECT_ROOT


TABLES = ("departments", "jobs", "hired_employees")
QUARTERLY_ROWS_SHOWN = 10
LABEL_WIDTH = 16


def shown(path: Path) -> str:
    """A path as the user typed-would-type it: relative to the current folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class Console:
    """The terminal, kept aside while file descriptors 1 and 2 go to the log file.

    Redirecting the descriptors (not only ``sys.stdout``) catches everything: Python logging
    and structlog handlers created before or after, warnings, ``print`` in task code, and the
    output of child processes.
    """

    def __init__(self, log_path: Path):
        sys.stdout.flush()
        sys.stderr.flush()
        self.out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        self.err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "w", buffering=1, encoding="utf-8", errors="replace")
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)

    def say(self, text: str = "", end: str = "\n", error: bool = False) -> None:
        stream = self.err if error else self.out
        stream.write(text + end)
        stream.flush()
        self.log.write(f"[demo] {text}\n")  # the console's lines in the log give it context
        self.log.flush()

    def step(self, label: str, action: str):
        """``label  action ...`` now, ``done in N s`` (or the failure) when the block ends."""
        return _Step(self, label, action)

    @property
    def is_terminal(self) -> bool:
        return self.out.isatty()


class _Step:
    """One line of the demo's output: the step, what it is doing now (on a terminal, rewritten in
    place as its tasks start), progress lines of long work under it, then its outcome."""

    current: _Step | None = None  # the step under way, which task callbacks and progress report to

    def __init__(self, console: Console, label: str, action: str):
        self.console, self.label = console, label
        self.text = f"{label:<{LABEL_WIDTH}} {action} ..."
        self.detail = ""  # said after the time: "done in 2.0 s: <detail>"
        self.failed = False  # "FAILED after 2.0 s: <detail>"
        self.status = ""  # the task under way, on a terminal only
        self.line_open = False  # the step's text is on the current line, awaiting its outcome

    def __enter__(self):
        self.started = time.monotonic()
        self.console.say(self.text, end=" ")
        self.line_open = True
        _Step.current = self
        return self

    def show(self, status: str) -> None:
        """What the step is doing now: on a terminal, after its text on the same line; in the
        log file always. Piped output (CI) stays one line per step."""
        self.console.log.write(f"[demo] {self.label}: {status}\n")
        if self.console.is_terminal and self.line_open:
            self.status = status
            self.console.out.write(f"\r\x1b[K{self.text} {status} ")
            self.console.out.flush()

    def note(self, text: str) -> None:
        """A line under the step (progress of long work). On a terminal the step's line follows
        again, still in progress; piped, the step's outcome line repeats its text at the end."""
        if self.line_open:
            self.console.out.write("\r\x1b[K" if self.console.is_terminal else "\n")
        self.console.say(f"{'':<{LABEL_WIDTH}}   {text}")
        self.line_open = self.console.is_terminal
        if self.line_open:
            self.console.say(f"{self.text} {self.status}".rstrip(), end=" ")

    def __exit__(self, kind, error, tb):
        _Step.current = None
        seconds = time.monotonic() - self.started
        failed = self.failed or kind is not None
        text = f"{'FAILED after' if failed else 'done in'} {seconds:.1f} s"
        if not self.line_open:
            self.console.say(self.text, end=" ")
        elif self.status and self.console.is_terminal:
            self.console.out.write(f"\r\x1b[K{self.text} ")  # the task name gives way to the outcome
        self.console.say(text + (f": {self.detail}" if self.detail else ""))
        self.line_open = False
        return False


class _ProgressToConsole(logging.Handler):
    """Progress lines of long work (``hr_pipeline.runtime.progress``), from the task code that
    ``dag.test()`` runs in this process, shown under the step under way."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, PROGRESS_RECORD_FLAG, False) and _Step.current is not None:
            _Step.current.note(record.getMessage())


def _show_task(context) -> None:
    """A task's on_execute_callback: the step under way says which task runs."""
    if _Step.current is not None:
        _Step.current.show(context["ti"].task_id)


class DemoFailure(Exception):
    """A step failed; the message says which and why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(ROOT / "include" / "sample_data"),
        help="folder with departments.csv, jobs.csv, hired_employees.csv",
    )
    args = parser.parse_args(argv)
    data = Path(args.data).resolve()
    missing = [t for t in TABLES if not (data / f"{t}.csv").is_file()]
    if missing:
        for table in missing:
            print(
                f"make demo: no extract for table {table}: {data / f'{table}.csv'} is missing",
                file=sys.stderr,
            )
        return 2

    state = state_dir()
    log_path = state / "logs" / "demo.log"
    console = Console(log_path)
    _watch_progress()
    console.say(f"HR pipeline demo on {shown(data)}; state in {shown(state)}")
    console.say(f"Framework logs (Airflow, Great Expectations, task logs): {shown(log_path)}")
    instance = None
    try:
        instance = _start_azurite(console, state)
        return _run(console, data, state, instance)
    except KeyboardInterrupt:
        console.say("\nmake demo interrupted", error=True)
        return 130
    except DemoFailure as failure:
        console.say(f"make demo failed: {failure}", error=True)
        console.say(f"Details in {shown(log_path)}", error=True)
        return 1
    except Exception:  # noqa: BLE001 - an unexpected error: the traceback to the log, the gist to the console
        traceback.print_exc()
        summary = traceback.format_exc().strip().splitlines()[-1]
        console.say(f"make demo failed: {summary}", error=True)
        console.say(f"Traceback in {shown(log_path)}", error=True)
        return 1
    finally:
        if instance is not None and instance.started:
            azurite.stop(instance.data_dir)


def _watch_progress() -> None:
    """Progress records of the package's loggers reach the console (at INFO, whatever level the
    frameworks set for the rest)."""
    package_log = logging.getLogger("hr_pipeline")
    if package_log.getEffectiveLevel() > logging.INFO:
        package_log.setLevel(logging.INFO)
    package_log.addHandler(_ProgressToConsole())


def _start_azurite(console: Console, state: Path) -> azurite.Instance:
    try:
        instance = azurite.start(state / "azurite")
    except (ports.PortBusy, azurite.AzuriteError, ValueError) as error:
        raise DemoFailure(f"Azurite was not started: {error}") from None
    if instance.note:
        console.say(instance.note)
    how = (
        "started for the demo, stopped when it ends"
        if instance.started
        else f"this checkout's, already running: pid {instance.pid}, left running"
    )
    console.say(f"Azurite blob service on {instance.endpoint} ({how})")
    return instance


def _start_afresh(store, container: str) -> None:
    """Empty tables and no file left waiting or half ingested by an earlier demo: the tables then
    hold exactly what DATA holds. Archives, rejects and the ingest ledger are kept."""
    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.warehouse.facade import Warehouse

    warehouse = Warehouse()
    warehouse.ensure_tables()
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        for table in reversed(list(CONTRACTS)):  # contract names only, never a user's string
            cursor.execute(f'DELETE FROM "{table}"')
    for prefix in ("incoming/", "processing/"):
        for blob in store.list(container, prefix):
            store.delete(container, blob.name)


def _run(console: Console, data: Path, state: Path, instance: azurite.Instance) -> int:
    warehouse_path = state / "warehouse.db"
    env_file = _prepare_airflow(console, state, instance, warehouse_path)

    from hr_pipeline.runtime.settings import backups_container, raw_container
    from hr_pipeline.storage.blob_store import BlobStore

    store = BlobStore()
    for container in (raw_container(), backups_container()):
        store.ensure_container(container)
    with console.step("warehouse", f"starting from empty tables in {shown(warehouse_path)}"):
        _start_afresh(store, raw_container())
    bag = _dag_bag()
    failures: dict[str, list[str]] = {}
    results, failed = _ingest_every_table(
        console, data, store, _for_demo(bag.dags["ingest_table"], failures), failures
    )
    if not failed:
        with console.step("metrics", "publishing the 2021 metric tables") as step:
            run = _for_demo(bag.dags["publish_metrics"], failures).test()
            if _state(run) != "success":
                step.failed = True
                failed.append(("metrics", _reason(run, [], failures)))

    console.say()
    _print_counts(console, results)
    if failed:
        _print_failures(console, failed)
        return 1

    from hr_pipeline.warehouse.facade import Warehouse

    _print_metrics(console, Warehouse(), warehouse_path)
    _print_next_steps(console, warehouse_path, env_file, instance)
    return 0


def _prepare_airflow(console: Console, state: Path, instance: azurite.Instance, warehouse_path: Path) -> Path:
    """This checkout's Airflow environment, in this process, with its metadata database migrated."""
    env_file = local_env.write_stack_env(
        ROOT,
        state,
        blob_port=instance.port,
        warehouse_uri=local_env.sqlite_warehouse_connection(warehouse_path),
    )
    # Settings of the caller's own Airflow (a shell's, a test session's) must not leak in.
    for key in [k for k in os.environ if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))]:
        del os.environ[key]
    os.environ.update(local_env.read_env_file(env_file))

    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    with console.step("airflow", f"preparing the metadata database in {shown(airflow_home)}"):
        # Airflow reads its configuration at import: only now may it be imported.
        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], stdin=subprocess.DEVNULL)
        if migrate.returncode:
            raise DemoFailure(f"airflow db migrate exited with {migrate.returncode}")
    return env_file


def _dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=ROOT / "dags")
    if bag.import_errors:
        raise DemoFailure(
            "DAG import errors: "
            + "; ".join(
                f"{file}: {error.strip().splitlines()[-1]}" for file, error in bag.import_errors.items()
            )
        )
    return bag


def _ingest_every_table(console: Console, data: Path, store, ingest, failures: dict[str, list[str]]):
    """Upload and ingest each extract; returns (table, state, files, run) and (table, reason) lists."""
    from hr_pipeline.runtime.settings import raw_container

    results = []
    failed = []
    for table in TABLES:
        source = data / f"{table}.csv"
        with console.step(table, f"uploading {source.name} ({source.stat().st_size:,} bytes)"):
            store.upload_file(raw_container(), f"incoming/{table}/{table}.csv", source)
        with console.step(table, "ingesting") as step:
            # Every valid row is loaded, whatever the share of rejects: a demo shows what the
            # data holds (the DAG's own default refuses a file with more than 10% rejected).
            run = ingest.test(run_conf={"table_name": table, "max_reject_ratio": 1})
            files = _validations(run)
            outcome = _state(run)
            rows, loaded, rejected = _totals(files)
            step.failed = outcome != "success"
            step.detail = (
                f"run {outcome}, see below"
                if step.failed
                else f"{rows} rows, {loaded} loaded, {rejected} rejected"
            )
        results.append((table, outcome, files, run))
        if outcome != "success":
            failed.append((table, _reason(run, files, failures)))
    return results, failed


def _print_failures(console: Console, failed: list[tuple[str, str]]) -> None:
    console.say()
    for table, reason in failed:
        dag_id = "publish_metrics" if table == "metrics" else f"ingest_table for {table}"
        console.say(f"FAILED: {dag_id}: {reason}", error=True)
    if not any(t == "metrics" for t, _ in failed):
        console.say("The metric tables were not published (an ingest failed).", error=True)
    console.say(f"Details in {shown(state_dir() / 'logs' / 'demo.log')}", error=True)


def _print_next_steps(
    console: Console, warehouse_path: Path, env_file: Path, instance: azurite.Instance
) -> None:
    console.say()
    console.say("Next")
    console.say(
        f"  warehouse (SQLite): {shown(warehouse_path)}, e.g. "
        f"sqlite3 {shlex.quote(shown(warehouse_path))} 'SELECT COUNT(*) FROM hired_employees'"
    )
    console.say(
        f"  Airflow CLI on this state: set -a; . {shown(env_file)}; set +a; .venv/bin/airflow dags list"
    )
    if instance.started:
        console.say(
            f"  the rejects stay in the emulator's data ({shown(instance.data_dir)}): "
            "`make azurite-start` serves them again"
        )
    console.say("  the UI, REST API and scheduler on this state: make up (make down to stop)")


def _for_demo(dag, failures: dict[str, list[str]]):
    """The DAG as the demo runs it: no retries (a failure is reported at once, not after the
    retry delays) and each failed task's exception recorded for the summary."""

    def record(context) -> None:
        error = context.get("exception")
        if error is None:
            message = "failed"
        elif type(error).__module__.startswith(("airflow", "hr_pipeline")):
            message = str(error).strip() or type(error).__name__  # a message meant for the user
        else:
            message = f"{type(error).__name__}: {error}"
        ti = context["ti"]
        failures.setdefault(ti.run_id, []).append(f"task {ti.task_id}: {message}")

    for task in dag.tasks:
        task.retries = 0
        task.on_failure_callback = [record]
        task.on_execute_callback = [_show_task]
    return dag


def _totals(files: list[dict]) -> tuple[int, int, int]:
    """(rows, loaded, rejected) over the files of one run."""
    return tuple(sum(f.get(key) or 0 for f in files) for key in ("rows", "valid", "rejected"))


def _state(run) -> str:
    state = run.state
    return str(getattr(state, "value", state))


def _validations(run) -> list[dict]:
    """The validate task's return value: one dict per file (table, source, rows, valid,
    rejected, ..., and where the rejects went when the task says so)."""
    from airflow.models.xcom import XComModel

    # The demo reads its in-process run's XComs from the metadata database it migrated itself.
    from airflow.utils.session import create_session  # noqa: TID251
    from sqlalchemy import select

    with create_session() as session:
        stored = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == "validate",
                XComModel.key == "return_value",
            )
        ).first()
    files = json.loads(stored) if isinstance(stored, str) else stored
    return files if isinstance(files, list) else []


def _reason(run, files: list[dict], failures: dict[str, list[str]]) -> str:
    """Why a run failed: its tasks' exceptions, else the unreadable files, else the task states."""
    reasons = list(dict.fromkeys(failures.get(run.run_id, [])))
    reasons += [
        f["unreadable_reason"]
        for f in files
        if f.get("unreadable_reason") and not any(f["unreadable_reason"] in r for r in reasons)
    ]
    if not reasons:
        states = {ti.task_id: _state(ti) for ti in run.get_task_instances()}
        reasons = [f"task states: {states}"]
    return " | ".join(reasons)


def _rejects_location(table: str, item: dict, run) -> str:
    """Where a file's rejects are, as the validate task said."""
    from hr_pipeline.runtime.settings import raw_container

    return f"{raw_container()}/{item.get('rejects_destination') or f'rejected/{table}/'}"


def _print_counts(console: Console, results) -> None:
    console.say("Rows per table (rejects: one CSV per file, the original columns and a `reason`)")
    console.say(f"{'table':<16} {'run':<8} {'rows':>6} {'loaded':>6} {'rejected':>8}  rejects")
    for table, state, files, run in results:
        rows, loaded, rejected = _totals(files)
        where = [_rejects_location(table, f, run) for f in files if f.get("rejected")]
        where += [
            f"{f['source']}: unreadable, moved whole to rejected/"
            for f in files
            if f.get("unreadable_reason")
        ]
        console.say(
            f"{table:<16} {state:<8} {rows:>6} {loaded:>6} {rejected:>8}  " + (", ".join(where) or "-")
        )


def _print_metrics(console: Console, warehouse, warehouse_path: Path) -> None:
    from hr_pipeline.metrics import METRICS, format_table, read_metric

    def table(name: str, rows) -> str:
        text = format_table(name, METRICS[name].column_names, rows)
        first, _, rest = text.partition("\n")
        return rest if first.startswith(name) else text  # its title line: said above it already

    name = "departments_above_mean_2021"
    rows = read_metric(warehouse, name)
    console.say()
    console.say(
        f"Departments that hired more employees in 2021 than the mean of all departments "
        f"({name}, {len(rows)} rows):"
    )
    console.say(table(name, rows))

    name = "quarterly_hires_2021"
    metric = METRICS[name]
    rows = read_metric(warehouse, name)
    console.say()
    console.say(
        f"Hires of 2021 per department and job, by quarter ({name}, "
        f"the first {min(QUARTERLY_ROWS_SHOWN, len(rows))} of {len(rows)} rows):"
    )
    console.say(table(name, rows[:QUARTERLY_ROWS_SHOWN]))
    order = ", ".join(f"{column} DESC" if descending else column for column, descending in metric.order_by)
    query = f"SELECT * FROM {name} ORDER BY {order}"
    console.say(
        f"All {len(rows)} rows: sqlite3 -header -column {shlex.quote(shown(warehouse_path))} "
        f"{shlex.quote(query)}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
