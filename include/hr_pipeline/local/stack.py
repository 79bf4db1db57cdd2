"""Start, stop and wait for a local Airflow stack: the driver behind `make up` / `make down` and the
stack tests.

A stack is Azurite (the blob emulator) plus one process per Airflow component (api-server,
scheduler, dag-processor, triggerer; Celery workers when asked), all configured by one environment
(see ``local_env.airflow_env``). Everything a stack owns lives under its ``state_dir``::

    <state_dir>/airflow.env         the KEY=VALUE environment (the plain `airflow` CLI can use it)
    <state_dir>/airflow/            AIRFLOW_HOME (SQLite metadata by default, task logs, passwords)
    <state_dir>/azurite/            the emulator's data, log and pid file
    <state_dir>/logs/<component>.log
    <state_dir>/run/<component>.pid  the process-group id of the component

Each component starts in its own session (process group), so stopping it ends its children too
(LocalExecutor workers, task processes, gunicorn/uvicorn workers).

From Python::

    config = StackConfig(root, state_dir=tmp, api_port=free_port(), blob_port=free_port(),
                         warehouse_uri=postgres_warehouse_connection("db"))
    stack = Stack(config)
    stack.start()            # idempotent; returns seconds until the API answered /monitor/health
    stack.wait_healthy()     # scheduler, triggerer and dag-processor heartbeating too
    api = stack.api()        # AirflowApi logged in as admin
    stack.stop()

A CeleryExecutor topology is the same call with ``executor="CeleryExecutor"``, a PostgreSQL
``metadata_uri``, ``extra_env`` for the broker/result backend and
``extra_components`` (the Celery workers of tests/stack/celery_stack.py).

Ports are verified to be the stack's own: each must be free before its process starts, and once
the API answers, the process listening on its port must be the stack's api-server (Azurite: see
``azurite.py``); otherwise ``start`` fails naming the port.

CLI: ``hr-pipeline up|down|status`` (what ``make up`` runs) for the stack (state in
``<root>/.local``, or ``HR_LOCAL_DIR``). Ports: ``AIRFLOW_API_PORT`` and
``AZURITE_BLOB_PORT`` when set (refused, naming the port, when taken); unset, 8080 and 10000 when
free, else the ports of the last start, else free ones (printed, and written to ``airflow.env``).
A running stack keeps its ports.

Of the caller's environment, the stack's processes get everything but its own Airflow settings
(``AIRFLOW__*``, ``AIRFLOW_CONN_*``), except the failure alerts' connections
``AIRFLOW_CONN_HR_ALERTS_*`` (which win over the same lines in ``airflow.env``); ``up`` prints
which alert channels are configured (``alert_summary``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hr_pipeline.local import PROJECT_ROOT, azurite, ports
from hr_pipeline.local import env as local_env
from hr_pipeline.local import state_dir as local_state_dir

ROOT = PROJECT_ROOT

# name -> arguments of `airflow ...`
AIRFLOW_COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
}


class StackError(RuntimeError):
    """The stack did not start, or did not become healthy; the message says where to look."""


@dataclass
class StackConfig:
    """Where a stack keeps its state, which ports it uses and how Airflow is configured."""

    root: Path = ROOT
    state_dir: Path = ROOT / ".local"
    api_port: int = local_env.DEFAULT_API_PORT
    blob_port: int = local_env.DEFAULT_BLOB_PORT
    executor: str = "LocalExecutor"
    warehouse_uri: str | None = None  # AIRFLOW_CONN_WAREHOUSE; default SQLite <root>/.local/warehouse.db
    metadata_uri: str | None = None  # SQLAlchemy URL; default SQLite in AIRFLOW_HOME
    log_server_port: int = 8793  # worker log server
    trigger_log_server_port: int = 8794
    extra_env: dict[str, str] = field(default_factory=dict)  # wins over the generated variables
    extra_components: dict[str, list[str]] = field(default_factory=dict)
    python: str = sys.executable  # the venv whose `airflow` runs the components

    @property
    def airflow_home(self) -> Path:
        return Path(self.state_dir) / "airflow"

    @property
    def env_file(self) -> Path:
        return Path(self.state_dir) / local_env.ENV_FILE_NAME

    @property
    def logs_dir(self) -> Path:
        return Path(self.state_dir) / "logs"

    @property
    def run_dir(self) -> Path:
        return Path(self.state_dir) / "run"

    @property
    def azurite_dir(self) -> Path:
        return Path(self.state_dir) / "azurite"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def components(self) -> dict[str, list[str]]:
        return {**AIRFLOW_COMPONENTS, **self.extra_components}


class Stack:
    """Start / stop / wait for the processes of one stack. Safe to call start() twice."""

    def __init__(self, config: StackConfig):
        self.config = config

    # -- environment -------------------------------------------------------------------------
    def write_env(self) -> Path:
        """Write the env file and the passwords file (keeping a running stack's JWT secret)."""
        config = self.config
        path = local_env.write_stack_env(
            config.root,
            config.state_dir,
            api_port=config.api_port,
            blob_port=config.blob_port,
            warehouse_uri=config.warehouse_uri,
            metadata_uri=config.metadata_uri,
            executor=config.executor,
            log_server_port=config.log_server_port,
            trigger_log_server_port=config.trigger_log_server_port,
        )
        if config.extra_env:
            local_env.write_env(path, {**local_env.read_env_file(path), **config.extra_env})
        return path

    def process_env(self) -> dict[str, str]:
        """The environment of every process of the stack: the caller's, without its Airflow
        settings, plus the env file, plus the caller's alert connections (which win)."""
        caller = dict(os.environ)
        # Settings of the caller's own Airflow (e.g. the test session's) must not leak in; its
        # alert connections must, as the README tells an operator to export them before `make up`.
        env = {k: v for k, v in caller.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(local_env.read_env_file(self.config.env_file))
        env.update(local_env.alert_variables(caller))
        env["PATH"] = f"{Path(self.config.python).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def running_environ(self, name: str = "scheduler") -> dict[str, str] | None:
        """The environment a running component was started with (Linux's /proc), or None."""
        pgid = self._pgid(name)
        if not pgid:
            return None
        try:
            raw = Path(f"/proc/{pgid}/environ").read_bytes()
        except OSError:
            return None
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        return env or None  # empty when the process rewrote its title over its environment

    def connections_in_database(self, conn_ids) -> set[str] | None:
        """Which of ``conn_ids`` exist in the metadata database (made in the UI or by the REST
        API), asked through the REST API; None when it cannot tell."""
        try:
            api = self.api()
        except (StackError, httpx.HTTPError):
            return None
        try:
            return {
                conn_id
                for conn_id in conn_ids
                if api.request("GET", f"/api/v2/connections/{conn_id}").status_code == 200
            }
        except httpx.HTTPError:
            return None
        finally:
            api.close()

    # -- processes ---------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.pid"

    def _pgid(self, name: str) -> int | None:
        """The process-group id of a running component, or None."""
        pid_file = self._pid_file(name)
        if not pid_file.exists():
            return None
        try:
            pgid = int(pid_file.read_text().strip())
            os.killpg(pgid, 0)
            return pgid
        except (ValueError, ProcessLookupError, PermissionError):
            return None

    def running(self) -> dict[str, int]:
        """Components whose process group is alive: name -> pgid."""
        return {name: pgid for name in self.config.components if (pgid := self._pgid(name))}

    def _check_ports_free(self) -> None:
        """Before starting the Airflow components: their ports must be free."""
        config = self.config
        for what, port in (
            ("the API", config.api_port),
            ("the worker log server", config.log_server_port),
            ("the triggerer log server", config.trigger_log_server_port),
        ):
            if not ports.is_free(port):
                raise StackError(ports.busy_message(port, what, None))

    def verify_api_port(self) -> None:
        """The process listening on the API port must be this stack's api-server."""
        pgid = self._pgid("api-server")
        owned = ports.owned_by(self.config.api_port, [pgid] if pgid else [])
        if owned is False:
            raise StackError(
                f"port {self.config.api_port} answers, but not from this stack's api-server "
                f"(listening{ports.describe_listeners(self.config.api_port)}); choose another port"
            )

    def start(self, timeout: float = 300.0) -> float:
        """Start whatever is not running yet and wait for the API; return the seconds it took."""
        started = time.monotonic()
        config = self.config
        for directory in (config.logs_dir, config.run_dir, config.airflow_home):
            directory.mkdir(parents=True, exist_ok=True)
        already = self.running()
        if already and set(already) != set(config.components):
            self.stop()  # half a stack (a crash): start clean rather than mix secrets
            already = {}
        if not already:
            self.write_env()
        env = self.process_env()

        try:
            azurite.start(config.azurite_dir, config.blob_port)
        except (ports.PortBusy, azurite.AzuriteError) as error:
            raise StackError(f"Azurite did not start: {error}") from error

        self.ensure_containers(env)
        if not already:
            migrate = subprocess.run(
                [config.python, "-m", "airflow", "db", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                cwd=config.root,
            )
            (config.logs_dir / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
            if migrate.returncode != 0:
                raise StackError(
                    f"airflow db migrate failed, see {config.logs_dir / 'db-migrate.log'}:\n"
                    f"{migrate.stderr[-2000:]}"
                )
            self._check_ports_free()
            for name, args in config.components.items():
                self._spawn(name, args, env)
        self.wait_for_api(timeout=timeout - (time.monotonic() - started))
        self.verify_api_port()
        return time.monotonic() - started

    def ensure_containers(self, env: dict[str, str]) -> None:
        """Create the raw-data and backups containers in Azurite if they are missing."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        connection_string = json.loads(env["AIRFLOW_CONN_AZURE_BLOB"])["extra"]["connection_string"]
        service = BlobServiceClient.from_connection_string(connection_string)
        for key in ("AZURE_BLOB_CONTAINER_RAW_DATA", "AZURE_BLOB_CONTAINER_BACKUPS"):
            try:
                service.create_container(env[key])
            except ResourceExistsError:
                pass

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log_path = self.config.logs_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [self.config.python, "-m", "airflow", *args],
                env=env,
                cwd=self.config.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() ends its children too
            )
        self._pid_file(name).write_text(f"{process.pid}\n")

    def stop(self, grace: float = 20.0) -> list[str]:
        """Stop every component (SIGTERM to its process group, SIGKILL after ``grace`` s) and
        Azurite. Returns the names of what was stopped."""
        stopped = []
        groups = {}
        for name in self.config.components:
            pid_file = self._pid_file(name)
            pgid = self._pgid(name)
            if pgid:
                os.killpg(pgid, signal.SIGTERM)
                groups[name] = pgid
            pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + grace
        for name, pgid in groups.items():
            while time.monotonic() < deadline and _group_alive(pgid):
                time.sleep(0.2)
            if _group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
                name += f" (killed after {grace:.0f} s)"
            stopped.append(name)
        if azurite.stop(self.config.azurite_dir):  # only this stack's own emulator
            stopped.append("azurite")
        return stopped

    # -- health ------------------------------------------------------------------------------
    def health(self) -> dict | None:
        """The API's /api/v2/monitor/health answer, or None when it does not answer (yet)."""
        try:
            response = httpx.get(f"{self.config.api_url}/api/v2/monitor/health", timeout=10)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def _check_alive(self) -> None:
        dead = [name for name in self.config.components if not self._pgid(name)]
        if dead:
            logs = "\n".join(
                f"--- {name} ({self.config.logs_dir / f'{name}.log'}):\n{_tail(self.config.logs_dir / f'{name}.log')}"
                for name in dead
            )
            raise StackError(f"component(s) exited: {', '.join(dead)}\n{logs}")

    def wait_for_api(self, timeout: float = 180.0) -> dict:
        """Wait until the API answers its health endpoint with a healthy metadata database."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if health and health.get("metadatabase", {}).get("status") == "healthy":
                return health
            self._check_alive()
            time.sleep(0.5)
        raise StackError(
            f"the API did not answer on {self.config.api_url} within {timeout:.0f} s; "
            f"see {self.config.logs_dir / 'api-server.log'}"
        )

    def wait_healthy(
        self, timeout: float = 180.0, components=("scheduler", "triggerer", "dag_processor")
    ) -> dict:
        """Wait until the health endpoint reports every listed component healthy."""
        deadline = time.monotonic() + timeout
        health: dict | None = None
        while time.monotonic() < deadline:
            health = self.health() or {}
            if all(health.get(part, {}).get("status") == "healthy" for part in components):
                return health
            self._check_alive()
            time.sleep(0.5)
        raise StackError(
            f"not healthy within {timeout:.0f} s: {json.dumps(health)}; logs in {self.config.logs_dir}"
        )

    def api(
        self, username: str = local_env.ADMIN_USER, password: str = local_env.ADMIN_PASSWORD
    ) -> AirflowApi:
        return AirflowApi(self.config.api_url, username, password)


class AirflowApi:
    """A small client of Airflow's REST API (v2), as a user's script would use it.

    Logs in with ``POST /auth/token`` (SimpleAuthManager) and sends the token as a Bearer header.
    """

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        response = httpx.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if response.status_code not in (200, 201):
            raise StackError(f"login as {username!r} failed: {response.status_code} {response.text}")
        self.token = response.json()["access_token"]
        self.client = httpx.Client(
            base_url=self.base_url, timeout=60, headers={"Authorization": f"Bearer {self.token}"}
        )

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def json(self, method: str, path: str, **kwargs):
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise StackError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def dag(self, dag_id: str) -> dict | None:
        response = self.request("GET", f"/api/v2/dags/{dag_id}")
        return response.json() if response.status_code == 200 else None

    def wait_for_dags(self, dag_ids, timeout: float = 180.0) -> None:
        """Wait until the dag-processor has registered every DAG id."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            missing = [dag_id for dag_id in dag_ids if self.dag(dag_id) is None]
            if not missing:
                return
            time.sleep(1)
        errors = self.json("GET", "/api/v2/importErrors")
        raise StackError(
            f"DAGs not registered within {timeout:.0f} s: {missing}; import errors: "
            f"{json.dumps(errors.get('import_errors', []))[:3000]}"
        )

    def unpause(self, dag_id: str) -> dict:
        return self.json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> httpx.Response:
        """``POST /api/v2/dags/{dag_id}/dagRuns``; the raw response (callers check refusals)."""
        return self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"conf": conf or {}, "logical_date": None}
        )

    def trigger_run(self, dag_id: str, conf: dict | None = None) -> str:
        response = self.trigger(dag_id, conf)
        if response.status_code >= 400:
            raise StackError(f"trigger {dag_id}: {response.status_code} {response.text}")
        return response.json()["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def return_value(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
        """A task's return value (its ``return_value`` XCom), as the REST API hands it to a user:
        decoded when the API serves it as JSON text."""
        value = self.json(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"deserialize": "true", "map_index": map_index},
        )["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900.0, interval: float = 0.5) -> dict:
        """Poll a run until it is finished; return the run (raise with task states on timeout)."""
        deadline = time.monotonic() + timeout
        run = {}
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(interval)
        states = {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}
        raise StackError(f"{dag_id} run {run_id} still {run.get('state')} after {timeout:.0f} s: {states}")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task try's log as text, one line per event (the API serves JSON or NDJSON only)."""
        response = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            headers={"Accept": "application/json"},
        )
        try:
            events = response.json().get("content", [])
        except ValueError:
            return response.text
        return "\n".join(_log_line(event) for event in events)

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """The states of a run's tasks and the logs of the failed ones, for an assertion message."""
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            lines.append(f"{ti['task_id']}: {ti['state']}")
            if ti["state"] in ("failed", "upstream_failed") and ti.get("try_number"):
                lines.append(self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"])[-4000:])
        return "\n".join(lines)

    def close(self) -> None:
        self.client.close()


def _log_line(event) -> str:
    """One structured log event as ``timestamp level event`` plus any error detail."""
    if not isinstance(event, dict):
        return str(event)
    line = " ".join(str(event[key]) for key in ("timestamp", "level", "event") if event.get(key))
    for key in ("error_detail", "exception"):
        if event.get(key):
            line += f"\n{event[key]}"
    return line


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of our own children count as gone.
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def connection_problem(value: str) -> str | None:
    """Why Airflow could not read a connection variable's value (JSON or URI), or None."""
    text = value.strip()
    if text.startswith("{"):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"not valid JSON ({error})"
        return None
    return None if "://" in text else "neither JSON nor a URI"


def alert_summary(
    variables: dict[str, str], sources: dict[str, str] | None = None, in_database=()
) -> list[str]:
    """What `make up` prints about failure alerts: one line naming each channel that is configured
    and where its connection comes from, or two saying that none is and how to set one.

    ``variables`` are the stack's ``AIRFLOW_CONN_HR_ALERTS_*``, ``sources`` says where each came
    from (default "your environment"), ``in_database`` the alert connection ids made in the UI.
    Values are never printed: they hold passwords and webhook signatures.
    """
    sources = sources or {}
    usable, broken, missing = [], [], []
    for channel, conn_id in local_env.ALERT_CHANNELS.items():
        variable = local_env.connection_variable(conn_id)
        if variables.get(variable):
            where = sources.get(variable, "your environment")
            problem = connection_problem(variables[variable])
            if problem:
                broken.append(
                    f"{channel} via {conn_id} is NOT usable: {variable} (from {where}) is {problem}"
                )
            else:
                usable.append(f"{channel} via {conn_id} ({variable} from {where})")
        elif conn_id in in_database:
            usable.append(f"{channel} via {conn_id} (Admin > Connections)")
        else:
            missing.append(f"no {channel} (set {variable})")
    if not usable:
        return [
            "  Failure alerts: NONE configured: a failed task alerts nobody"
            + "".join(f"; {b}" for b in broken),
            "    to switch them on, export AIRFLOW_CONN_HR_ALERTS_SMTP (email) and/or "
            "AIRFLOW_CONN_HR_ALERTS_WEBHOOK (webhook), JSON connections, then `make down && make up` "
            "(README: Alerts)",
        ]
    return ["  Failure alerts: " + ", ".join(usable) + "".join(f"; {part}" for part in broken + missing)]


def alert_lines(stack: Stack, was_running: bool) -> list[str]:
    """The alert summary of the stack `make up` started or found running."""
    caller = local_env.alert_variables(os.environ)
    env_file = stack.config.env_file
    from_file = local_env.alert_variables(local_env.read_env_file(env_file)) if env_file.exists() else {}
    variables = {**from_file, **caller}
    sources = {**dict.fromkeys(from_file, str(env_file)), **dict.fromkeys(caller, "your environment")}
    notes = []
    running = stack.running_environ() if was_running else None
    if running is not None:
        if local_env.alert_variables(running) != variables:
            notes.append(
                "    your AIRFLOW_CONN_HR_ALERTS_* differ from the running stack's: "
                "`make down && make up` applies them"
            )
        variables = local_env.alert_variables(running)
        sources = dict.fromkeys(variables, "the running stack's environment")
    elif was_running:
        notes.append(
            "    a running stack keeps the alert connections it started with: `make down && make up`"
        )
    in_database = stack.connections_in_database(local_env.ALERT_CHANNELS.values()) or set()
    return alert_summary(variables, sources, in_database) + notes


API_PORT_VARIABLE = "AIRFLOW_API_PORT"
LOG_SERVER_PORTS = {
    "log_server_port": (8793, "the worker log server"),
    "trigger_log_server_port": (8794, "the triggerer log server"),
}


def choose_ports(state_dir: Path, running: bool) -> tuple[dict[str, int], list[str]]:
    """The ports for the stack of `make up` in ``state_dir``, and notes to print.

    A running stack keeps the ports of its env file. Otherwise: ``AIRFLOW_API_PORT`` /
    ``AZURITE_BLOB_PORT`` when set (``ports.PortBusy`` when taken); unset, the default when free,
    else the port of the last start, else a free one. This checkout's running Azurite keeps its
    port. Raises ``ports.PortBusy`` with the message to show.
    """
    env_file = Path(state_dir) / local_env.ENV_FILE_NAME
    previous = local_env.env_ports(local_env.read_env_file(env_file)) if env_file.exists() else {}
    asked = {
        "api_port": ports.explicit_port(API_PORT_VARIABLE),
        "blob_port": ports.explicit_port(azurite.VARIABLE),
    }
    if running:
        for option, variable, what in (
            ("api_port", API_PORT_VARIABLE, "the API"),
            ("blob_port", azurite.VARIABLE, "Azurite"),
        ):
            if asked[option] is not None and asked[option] != previous.get(option):
                raise ports.PortBusy(
                    f"the stack already runs, with {what} on port {previous.get(option)}, not "
                    f"{asked[option]} ({variable}): run `make down` first to move it"
                )
        return previous, []
    notes: list[str] = []
    chosen: dict[str, int] = {}

    def take(option: str, default: int, variable: str | None, what: str) -> None:
        port, note = ports.choose_port(default, variable, what, previous=previous.get(option))
        while port in chosen.values():  # two services never share a port
            port = ports.free_port()
        chosen[option] = port
        if note:
            notes.append(note)

    take("api_port", local_env.DEFAULT_API_PORT, API_PORT_VARIABLE, "the Airflow API")
    own = azurite.own_instance(Path(state_dir) / "azurite")
    if own:
        if asked["blob_port"] not in (None, own.port):
            raise ports.PortBusy(
                f"this checkout's Azurite already runs on port {own.port} (pid {own.pid}), not "
                f"{asked['blob_port']}: run `make azurite-stop` first to move it"
            )
        chosen["blob_port"] = own.port
    else:
        take("blob_port", azurite.DEFAULT_PORT, azurite.VARIABLE, "Azurite")
    for option, (default, what) in LOG_SERVER_PORTS.items():
        take(option, default, None, what)
    return chosen, notes


def up(stack: Stack, state_dir: Path) -> int:
    """`make up`: start the stack (or find it running) and print how to use it."""
    was_running = stack.running()
    if was_running and set(was_running) != set(stack.config.components):
        stack.stop()  # half a stack (a crash): start clean
        was_running = {}
    try:
        chosen, notes = choose_ports(state_dir, running=bool(was_running))
    except (ports.PortBusy, ValueError) as error:
        print(f"The stack was not started: {error}", file=sys.stderr)
        return 1
    config = StackConfig(state_dir=state_dir, **chosen)
    stack = Stack(config)
    for note in notes:
        print(note)
    try:
        seconds = stack.start()
    except StackError as error:
        print(f"The stack did not start: {error}", file=sys.stderr)
        if not was_running:
            stack.stop()
        return 1
    print(
        ("Airflow was already running" if was_running else f"Airflow is up ({seconds:.0f} s)")
        + f": {config.api_url.replace('127.0.0.1', 'localhost')}"
    )
    print(
        f"  log in as {local_env.ADMIN_USER} / {local_env.ADMIN_PASSWORD} "
        f'(REST API token: POST /auth/token with {{"username": ..., "password": ...}})'
    )
    print(f"  Azurite blob service on 127.0.0.1:{config.blob_port}; logs in {config.logs_dir}")
    print(f"  CLI: set -a; . {config.env_file}; set +a; airflow dags list")
    print("  The pipeline's DAGs run unpaused: files dropped under incoming/<table>/ ingest themselves")
    for line in alert_lines(stack, bool(was_running)):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The local Airflow stack of `make up`.")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", default=str(local_state_dir()))
    parser.add_argument("--api-port", type=int, help=f"as {API_PORT_VARIABLE}")
    parser.add_argument("--blob-port", type=int, help=f"as {azurite.VARIABLE}")
    args = parser.parse_args(argv)
    for variable, value in ((API_PORT_VARIABLE, args.api_port), (azurite.VARIABLE, args.blob_port)):
        if value is not None:
            os.environ[variable] = str(value)
    state_dir = Path(args.state_dir).resolve()
    stack = Stack(StackConfig(state_dir=state_dir))
    if args.action == "up":
        return up(stack, state_dir)
    if args.action == "down":
        stopped = stack.stop()
        print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    env_file = stack.config.env_file
    if env_file.exists():  # the API port of the running stack
        stack.config.api_port = local_env.env_ports(local_env.read_env_file(env_file)).get(
            "api_port", stack.config.api_port
        )
    running = stack.running()
    health = stack.health()
    print(json.dumps({"running": running, "health": health}, indent=2))
    return 0 if running else 1


if __name__ == "__main__":
    raise SystemExit(main())
