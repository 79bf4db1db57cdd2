"""The distributed topology on this machine, on top of the local stack driver (``hr_pipeline.local.stack``).

``hr_pipeline.local.stack`` starts Azurite and one process group per Airflow component; this module only
adds what a CeleryExecutor deployment needs on top, the way docker-compose runs it:

- Metadata database: its own PostgreSQL database ``hr_airflow_celery_<random>`` (never the
  warehouse's); Celery's result backend in the same database (``db+postgresql://``).
- Broker: Redis at 127.0.0.1:6379, db 5, and a queue private to this stack
  (``hr_celery_<random>``: ``[operators] default_queue`` and the workers' ``--queues``), so two
  stacks on one Redis never take each other's tasks.
- Workers: N ``airflow celery worker`` process groups, ``--celery-hostname wN@%h``,
  ``--concurrency 2``, ``--skip-serve-logs`` (they share a machine, and a log-server port).
  ``[core] hostname_callable = worker_hostname.hostname`` makes the ``hostname`` Airflow 3.3
  records on each task instance the worker's Celery name, so a test can tell who ran what.
- ``[scheduler] task_instance_heartbeat_timeout`` low (20 s): a task whose worker died is found
  and failed for retry quickly; its retry runs on a surviving worker.
- ``kill_worker()`` SIGKILLs a worker's whole process group (Celery parent, pool children, the
  task supervisors and task processes): what losing a VM looks like.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from stack_support import POSTGRES_DSN, postgres_url

from hr_pipeline.local import stack as local_stack

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]


REDIS_URL = os.environ.get("HR_TEST_REDIS", "redis://127.0.0.1:6379/5")
StackError = local_stack.StackError


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dags_folder_with(extra_files: list[Path], directory: Path) -> Path:
    """A DAG folder holding the project's DAG files and ``extra_files`` (symlinks)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted((PROJECT_ROOT / "dags").glob("*.py")) + list(extra_files):
        link = directory / path.name
        if not link.exists():
            link.symlink_to(path)
    return directory


@dataclass
class CeleryStack:
    state_dir: Path
    warehouse_uri: str
    workers: tuple[str, ...] = ("w1", "w2")
    concurrency: int = 2
    heartbeat_timeout_seconds: int = 20
    dags_folder: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        suffix = uuid.uuid4().hex[:10]
        self.database = f"hr_airflow_celery_{suffix}"
        self.queue = f"hr_celery_{suffix}"
        env = {
            "PYTHONPATH": str(HERE),  # the test DAGs' helper module
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": postgres_url(self.database, "db+postgresql"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "hr_pipeline.ops.celery_config.CELERY_CONFIG",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_hostname.hostname",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout_seconds),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # The tests trigger every ingest themselves: no run started by files landing races them.
            "HR_INGEST_ON_LANDING": "false",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
        if self.dags_folder:
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(self.dags_folder)
        env.update(self.extra_env)
        self.config = local_stack.StackConfig(
            state_dir=Path(self.state_dir),
            api_port=free_port(),
            blob_port=free_port(),
            executor="CeleryExecutor",
            warehouse_uri=self.warehouse_uri,
            metadata_uri=postgres_url(self.database, "postgresql+psycopg2"),
            extra_env=env,
            extra_components={
                self.component(name): [
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--queues",
                    self.queue,
                    "--concurrency",
                    str(self.concurrency),
                    "--skip-serve-logs",
                ]
                for name in self.workers
            },
        )
        self.stack = local_stack.Stack(self.config)
        self._api: local_stack.AirflowApi | None = None

    @staticmethod
    def component(worker: str) -> str:
        return f"celery-worker-{worker}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> float:
        """Create the metadata database, start everything; return seconds until workers answer."""
        started = time.monotonic()
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        self.stack.start(timeout=300)
        self.stack.wait_healthy(timeout=300)
        self.wait_for_workers(self.workers)
        return time.monotonic() - started

    def stop(self) -> None:
        if self._api:
            self._api.close()
        try:
            self.stack.stop()
        finally:
            self._flush_queue()
            with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def api(self) -> local_stack.AirflowApi:
        if self._api is None:
            self._api = self.stack.api()
        return self._api

    def log(self, component: str) -> Path:
        return self.config.logs_dir / f"{component}.log"

    def _flush_queue(self) -> None:
        """Remove this stack's queue, its binding, and messages a killed worker left unacked."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in [*client.scan_iter(f"{self.queue}*"), f"_kombu.binding.{self.queue}"]:
                client.delete(key)
            for tag, payload in client.hgetall("unacked").items():
                try:
                    _message, _exchange, routing_key = json.loads(payload)
                except (ValueError, TypeError):
                    continue
                if routing_key == self.queue:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
        finally:
            client.close()

    # -- workers -------------------------------------------------------------------------------

    def wait_for_workers(self, names, timeout: float = 240) -> set[str]:
        """Wait until every named worker answers a Celery ping; return the node names seen."""
        from celery import Celery

        app = Celery(broker=REDIS_URL)
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        try:
            while time.monotonic() < deadline:
                replies = app.control.ping(timeout=2.0) or []
                seen = {node for reply in replies for node in reply}
                if all(any(node.startswith(f"{n}@") for node in seen) for n in names):
                    return seen
                self.stack._check_alive()
                time.sleep(1)
        finally:
            app.close()
        raise StackError(
            f"Celery workers {list(names)} did not answer within {timeout:.0f}s "
            f"(seen: {sorted(seen)}); logs in {self.config.logs_dir}"
        )

    def worker_pgid(self, worker: str) -> int | None:
        return self.stack._pgid(self.component(worker))

    def worker_processes(self, worker: str) -> list:
        """The worker's processes: its process group and every descendant (psutil.Process list).

        Descendants matter: Airflow 3.3's task supervisor puts each task-runner process in a
        process group of its own (``os.setpgid(0, 0)``), so killing the worker's group alone
        would leave the running task behind, orphaned and still writing.
        """
        import psutil

        pgid = self.worker_pgid(worker)
        if pgid is None:
            return []
        found = {}
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(process.pid) == pgid:
                    found[process.pid] = process
                    for child in process.children(recursive=True):
                        found[child.pid] = child
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return list(found.values())

    def kill_worker(self, worker: str) -> list[int]:
        """SIGKILL the worker and every process under it, task runners included (a lost VM).

        Returns the pids killed.
        """
        import psutil

        pgid = self.worker_pgid(worker)
        if pgid is None:
            raise StackError(f"worker {worker} is not running")
        processes = self.worker_processes(worker)
        os.killpg(pgid, signal.SIGKILL)
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and local_stack._group_alive(pgid):
            time.sleep(0.2)
        return [p.pid for p in processes]

    # -- what ran where --------------------------------------------------------------------------

    def task_tries(self, dag_id: str, run_id: str) -> list[dict]:
        """Every try of every task instance of a run, with the hostname that ran it.

        From the metadata database: ``task_instance`` holds the latest try, ``task_instance_history``
        the earlier ones (the REST API lists the latest try only).
        """
        sql = """
            SELECT task_id, map_index, try_number, state, hostname FROM task_instance
             WHERE dag_id = %(d)s AND run_id = %(r)s
            UNION ALL
            SELECT task_id, map_index, try_number, state, hostname FROM task_instance_history
             WHERE dag_id = %(d)s AND run_id = %(r)s
            ORDER BY 1, 2, 3
        """
        with psycopg.connect(postgres_url(self.database, "postgresql")) as conn:
            rows = conn.execute(sql, {"d": dag_id, "r": run_id}).fetchall()
        keys = ("task_id", "map_index", "try_number", "state", "hostname")
        return [dict(zip(keys, row)) for row in rows]

    def running_task_on(self, worker: str) -> list[dict]:
        """Task instances now running whose hostname is ``worker``'s."""
        with psycopg.connect(postgres_url(self.database, "postgresql")) as conn:
            rows = conn.execute(
                "SELECT dag_id, run_id, task_id, map_index, try_number, hostname FROM task_instance"
                " WHERE state = 'running' AND hostname LIKE %s",
                (f"{worker}@%",),
            ).fetchall()
        keys = ("dag_id", "run_id", "task_id", "map_index", "try_number", "hostname")
        return [dict(zip(keys, row)) for row in rows]


def worker_of(hostname: str | None) -> str | None:
    """``w1@machine`` -> ``w1``."""
    return hostname.split("@", 1)[0] if hostname and "@" in hostname else hostname


def describe(tries: list[dict]) -> str:
    return json.dumps(tries, indent=1, default=str)
