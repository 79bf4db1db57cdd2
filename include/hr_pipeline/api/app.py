"""The pipeline's HTTP API: a FastAPI app that Airflow's api-server mounts under ``/hr``
(see ``plugins/hr_api_plugin.py``).

=========================================  ==========================================================
``POST /hr/api/ingest/{table_name}``        triggers ``ingest_table`` for that table
``POST /hr/api/backup/{table_name}``        triggers ``backup_tables`` for that one table
``POST /hr/api/restore/{table_name}``       triggers ``restore_table`` (body: ``backup``, ``as_of``, ``dry_run``)
``GET /hr/api/metrics/quarterly-hires-2021``           reads ``quarterly_hires_2021``
``GET /hr/api/metrics/departments-above-mean-2021``    reads ``departments_above_mean_2021``
=========================================  ==========================================================

Pages for Airflow's UI ("HR metrics", "Data quality") are served under ``/hr/pages/`` (see
``hr_pipeline.api.pages``), with the same authentication; they are not part of the OpenAPI document.

Each metric of ``SERVED_METRICS`` is served at ``GET /hr/api/metrics/<its name, dashed>``, with the
columns, types and order of its definition in ``hr_pipeline.metrics``.

The POSTs answer 202 with the new run's id (follow it with ``GET /api/v2/dags/{dag_id}/dagRuns/
{dag_run_id}``); the GETs read the published tables from the warehouse. Refused with 422 before
anything runs: an unknown table, a body field the endpoint does not take (the request models
forbid extra fields; ingest and backup take none), a restore's ``backup`` that is neither
``latest`` nor a backup blob name of the path's table (``<table>/<table>-<YYYYMMDDTHHMMSS.ffffffZ>
.avro``, read as ``hr_pipeline.backup.backups`` reads the names it lists), and parameters the DAG's Params
refuse. A DAG that is not registered (its file missing or broken) answers 404.

An ingest of a table that already has a waiting ``ingest_table`` run (queued or running, its
``wait_for_files`` sensor not finished) answers 409 naming that run: the files uploaded to
``incoming/<table>/`` will be ingested by it, and a second run would only wait beside it. The
check reads Airflow's metadata database (``DagRun``, ``TaskInstance``) from the api-server.

The OpenAPI document lists every status each endpoint can answer, with its meaning.

Authentication and authorization are Airflow's own: a request carries the same JWT as the REST
API (``Authorization: Bearer <token from POST /auth/token>``) or the UI's session cookie. The
dependency below hands both to the api-server's ``get_user`` (so expiry, signature and the UI
cookie are checked exactly as for ``/api/v2``), then asks the auth manager whether that user may
trigger (POST) or read (GET) the DAG behind the endpoint. No token: 401; not allowed: 403.

Limits: a request body larger than ``HR_API_MAX_BODY_BYTES`` (default 1 MiB) is refused with 413,
on its ``Content-Length`` before any of it is read, or, without one (chunked), as soon as the bytes
received pass the limit. A metric table that cannot be read answers 503 with a generic message and
a reference; the cause (which names the warehouse's host and port) goes to the api-server's log
under that reference, never to the client.

Airflow's server modules are imported inside the functions: every Airflow process (scheduler,
workers, dag-processor) loads the plugins, and only the api-server needs them.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model

from hr_pipeline import metrics
from hr_pipeline.backup.backups import backup_blob_name, backup_ref
from hr_pipeline.contract.tables import TABLE_NAMES
from hr_pipeline.runtime.settings import MAX_BODY_BYTES_VARIABLE, max_body_bytes

URL_PREFIX = "/hr"
INGEST_DAG = "ingest_table"
BACKUP_DAG = "backup_tables"
RESTORE_DAG = "restore_table"
METRICS_DAG = "publish_metrics"
INGEST_SENSOR = "wait_for_files"
LATEST_BACKUP = "latest"

TableName = enum.Enum("TableName", {name: name for name in TABLE_NAMES}, type=str)
TableName.__doc__ = "A table of the data contract."


log = logging.getLogger(__name__)


# -- request size limit ------------------------------------------------------------------------
class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"The request body is larger than {limit} bytes (the limit is set by {MAX_BODY_BYTES_VARIABLE}).",
        )


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, without reading it.

    A declared ``Content-Length`` over the limit is answered at once (the app never runs, the body
    is never read). Otherwise the body is counted as the app reads it; the message that passes the
    limit raises instead of being handed over, and the client gets 413 (from FastAPI's error
    handling when it was reading the body for a parameter, else from here).
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return

        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": _BodyTooLarge(self.limit).detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# -- authentication and authorization (Airflow's) --------------------------------------------------
_bearer = HTTPBearer(
    auto_error=False,
    description='The JWT of Airflow\'s REST API: POST /auth/token with {"username", "password"}.',
)


async def airflow_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
):
    """The authenticated Airflow user (Bearer token or UI cookie), else 401 / 403."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


def _authorize(user, method: str, dag_id: str, run_access: bool) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    allowed = get_auth_manager().is_authorized_dag(
        method=method,
        access_entity=DagAccessEntity.RUN if run_access else None,
        details=DagDetails(id=dag_id),
        user=user,
    )
    if not allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"User {user.get_name()!r} may not {'trigger' if method == 'POST' else 'read'} {dag_id}",
        )


UserDep = Annotated[Any, Depends(airflow_user)]


# -- models -----------------------------------------------------------------------------------
class TriggeredRun(BaseModel):
    """A DAG run that the request queued."""

    dag_id: str
    dag_run_id: str
    state: str
    conf: dict[str, Any]
    status_url: str = Field(description="Where the REST API reports this run's state.")


class NoParameters(BaseModel):
    """Ingest and backup take no body; an empty JSON object is accepted, and any field refused."""

    model_config = ConfigDict(extra="forbid")


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup: str = Field(
        LATEST_BACKUP,
        min_length=1,
        description="'latest', or a backup blob name of the path's table "
        "(<table>/<table>-<YYYYMMDDTHHMMSS.ffffffZ>.avro).",
    )
    as_of: datetime | None = Field(
        None,
        description="Restore the table as it was at this instant (ISO 8601): the newest backup taken "
        "at or before it, plus every load committed after that backup up to the instant.",
    )
    dry_run: bool = Field(
        False,
        description="Change nothing: the run's log and return value say which backup and loads would "
        "be applied, and how many rows would be added, removed and changed.",
    )


def is_backup_name(table: str, name: str) -> bool:
    """Whether ``name`` is the blob name of a backup of ``table``, as ``backup.backup_ref`` reads
    the names it lists (so names to the second, which older versions wrote, are backups too)."""
    # backup_ref's pattern ends in '$' and reads '\d' as any Unicode digit: a name with a newline
    # at its end or other digits than 0-9 would pass it, and then match no blob.
    if not (name.isascii() and name.isprintable()):
        return False
    try:
        ref = backup_ref("", name, 0, None)
    except ValueError:  # the stamp has the form of one but is no date (month 13, say)
        return False
    return ref is not None and ref.table == table


def check_backup_name(table: str, backup: str) -> None:
    """422, in FastAPI's form for a body field, for a ``backup`` that no restore of ``table`` can
    find: the run would only fail later, after queueing and retries."""
    if backup == LATEST_BACKUP or is_backup_name(table, backup):
        return
    example = backup_blob_name(table, datetime(2026, 1, 2, 3, 4, 5, 123456))
    raise RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("body", "backup"),
                "msg": f"backup must be {LATEST_BACKUP!r} or the blob name of a backup of {table}: "
                f"{table}/{table}-<YYYYMMDDTHHMMSS.ffffffZ>.avro (e.g. {example})",
                "input": backup,
            }
        ]
    )


class ErrorMessage(BaseModel):
    detail: str


class RefusedRequest(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="FastAPI's list of {loc, msg, type} for a request refused by its models, or "
        "a sentence for parameters the DAG refused."
    )


# The statuses the endpoints answer, for the OpenAPI document.
_QUEUED = "The run was queued: its id, and where the REST API reports its state."
_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorMessage,
        "description": "No credentials, or a token or session Airflow does not accept.",
    },
    403: {
        "model": ErrorMessage,
        "description": "The user may not trigger (POST) or read (GET) the DAG behind the endpoint.",
    },
    413: {
        "model": ErrorMessage,
        "description": f"The request body is larger than {MAX_BODY_BYTES_VARIABLE} bytes (default 1 MiB).",
    },
}
_TRIGGER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_AUTH_RESPONSES,
    404: {
        "model": ErrorMessage,
        "description": "The DAG behind the endpoint is not registered: its file is missing from the DAGs "
        "folder or has import errors.",
    },
    422: {
        "model": RefusedRequest,
        "description": "An unknown table, a body field the endpoint does not take, a restore's backup "
        "that is neither 'latest' nor a backup blob name of the table, or parameters the DAG's Params "
        "refuse. Nothing was queued.",
    },
}
_INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_TRIGGER_RESPONSES,
    409: {
        "model": ErrorMessage,
        "description": f"An {INGEST_DAG} run of the table is already waiting for files (queued, or its "
        f"{INGEST_SENSOR} not finished); the message names it. Files uploaded to incoming/<table>/ "
        "will be ingested by that run. Nothing was queued.",
    },
}
_METRIC_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_AUTH_RESPONSES,
    503: {
        "model": ErrorMessage,
        "description": f"The metric table cannot be read from the warehouse (not published by "
        f"{METRICS_DAG} yet, or the warehouse is unreachable); the cause is in the api-server's log "
        "under the reference in the message.",
    },
}


# -- one waiting ingest per table ------------------------------------------------------------------
# The sensor's states before it has finished: a run in one of them still takes the files that land.
SENSOR_WAITING_STATES = (
    None,
    "scheduled",
    "queued",
    "running",
    "deferred",
    "up_for_reschedule",
    "up_for_retry",
)


def waiting_ingest_run(session, table: str, dag_id: str = INGEST_DAG) -> str | None:
    """The id of the oldest queued or running ``dag_id`` run of ``table`` (its conf's
    ``table_name``) whose ``wait_for_files`` has not finished (no task instance yet, or one in
    ``SENSOR_WAITING_STATES``), else None. ``session``: a SQLAlchemy session on Airflow's metadata
    database."""
    from airflow.models import DagRun, TaskInstance
    from airflow.sdk import DagRunState
    from sqlalchemy import select

    runs = session.execute(
        select(DagRun.run_id, DagRun.conf)
        .where(DagRun.dag_id == dag_id, DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]))
        .order_by(DagRun.run_after, DagRun.id)
    ).all()
    # conf is JSON: filtered here, the same on SQLite, PostgreSQL and MySQL.
    of_table = [run_id for run_id, conf in runs if isinstance(conf, dict) and conf.get("table_name") == table]
    if not of_table:
        return None
    sensor_states = dict(
        session.execute(
            select(TaskInstance.run_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.task_id == INGEST_SENSOR,
                TaskInstance.run_id.in_(of_table),
            )
        ).all()
    )
    return next((run_id for run_id in of_table if sensor_states.get(run_id) in SENSOR_WAITING_STATES), None)


def refuse_a_second_waiting_ingest(table: str) -> None:
    """409 when ``table`` already has an ingest run waiting for its files."""
    from airflow import settings

    with settings.Session() as session:
        run_id = waiting_ingest_run(session, table)
    if run_id is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{INGEST_DAG} run {run_id} of {table} is already waiting for files: the files uploaded "
            f"to incoming/{table}/ will be ingested by it (follow it at "
            f"/api/v2/dags/{INGEST_DAG}/dagRuns/{run_id}). No second run was queued.",
        )


# -- triggering -------------------------------------------------------------------------------
def trigger(dag_id: str, conf: dict[str, Any], user) -> TriggeredRun:
    """Queue a manual run of ``dag_id`` with ``conf`` (validated against the DAG's Params)."""
    # The api-server's own trigger (the function behind POST /api/v2/.../dagRuns): this app runs
    # inside that server, where a request to its own REST API would only go round in a circle.
    from airflow.api.common.trigger_dag import trigger_dag  # noqa: TID251
    from airflow.exceptions import DagNotFound
    from airflow.utils.types import DagRunTriggeredByType

    _authorize(user, "POST", dag_id, run_access=True)
    try:
        run = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name=user.get_name(),
            conf=conf,
        )
    except DagNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"DAG {dag_id!r} is not registered (yet): is its file in the DAGs "
            f"folder and free of import errors?",
        ) from None
    except ValueError as error:  # ParamValidationError is a ValueError
        raise HTTPException(422, f"{dag_id} refused the parameters {conf}: {error}") from None
    return TriggeredRun(
        dag_id=dag_id,
        dag_run_id=run.run_id,
        state=getattr(run.state, "value", str(run.state)),
        conf=conf,
        status_url=f"/api/v2/dags/{dag_id}/dagRuns/{run.run_id}",
    )


# -- reading the published metrics ----------------------------------------------------------------
# The metric tables the API serves: name -> (the response model's name in the OpenAPI document,
# the operation's summary).
SERVED_METRICS: dict[str, tuple[str, str]] = {
    "quarterly_hires_2021": ("QuarterlyHires", "Hires of 2021 per department and job, by quarter"),
    "departments_above_mean_2021": ("DepartmentAboveMean", "Departments that hired more than the 2021 mean"),
}
_FIELD_TYPES = {metrics.INTEGER: int, metrics.STRING: str, metrics.FLOAT: float}


def metric_model(metric: metrics.MetricTable, model_name: str) -> type[BaseModel]:
    """One row of a metric table: its columns, in order, with their types."""
    return create_model(model_name, **{name: (_FIELD_TYPES[kind], ...) for name, kind in metric.columns})


def read_metric_table(table: str) -> list[dict]:
    """Rows of a published metric table as dicts, in the metric's order."""
    from hr_pipeline.warehouse.facade import Warehouse

    try:
        # Inside: a missing or broken connection is the same 503.
        rows = metrics.read_metric(Warehouse(), table)
    except Exception:  # the table is missing until publish_metrics first ran, or no warehouse
        # The driver's message names the warehouse's host and port (and more): the log has it,
        # the client gets a reference to it.
        reference = uuid.uuid4().hex[:12]
        log.exception(
            "%s metrics: %s cannot be read from the warehouse (reference %s)", URL_PREFIX, table, reference
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{table} cannot be read from the warehouse; has {METRICS_DAG} run yet? The cause is "
            f"in the api-server's log under reference {reference}.",
        ) from None
    return [dict(zip(metrics.METRICS[table].column_names, row)) for row in rows]


def _metric_reader(table: str):
    # No docstring: FastAPI would publish it as the operation's description.
    def read(user: UserDep) -> list[dict]:
        _authorize(user, "GET", METRICS_DAG, run_access=False)
        return read_metric_table(table)

    return read


# -- the app ------------------------------------------------------------------------------------
DOCS_ASSETS = "/docs-assets"


def _serve_docs_offline(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their scripts and styles served by this app, from the
    pinned ``fastapi-offline`` package, instead of FastAPI's default CDN: the pages work on a
    private network with no internet access."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(
        DOCS_ASSETS,
        StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


# -- the routes -----------------------------------------------------------------------------------
pipeline_routes = APIRouter()


@pipeline_routes.post(
    "/api/ingest/{table_name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TriggeredRun,
    tags=["pipeline"],
    summary="Ingest the files waiting under incoming/<table_name>/",
    response_description=_QUEUED,
    responses=_INGEST_RESPONSES,
)
def ingest(
    table_name: TableName, user: UserDep, body: Annotated[NoParameters | None, Body()] = None
) -> TriggeredRun:
    # Authorized first: the 409 names a run, which only a user who may trigger it sees.
    _authorize(user, "POST", INGEST_DAG, run_access=True)
    refuse_a_second_waiting_ingest(table_name.value)
    return trigger(INGEST_DAG, {"table_name": table_name.value}, user)


@pipeline_routes.post(
    "/api/backup/{table_name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TriggeredRun,
    tags=["pipeline"],
    summary="Write an AVRO backup of the table",
    response_description=_QUEUED,
    responses=_TRIGGER_RESPONSES,
)
def backup(
    table_name: TableName, user: UserDep, body: Annotated[NoParameters | None, Body()] = None
) -> TriggeredRun:
    return trigger(BACKUP_DAG, {"tables": [table_name.value]}, user)


@pipeline_routes.post(
    "/api/restore/{table_name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TriggeredRun,
    tags=["pipeline"],
    summary="Replace the table's rows with a backup's",
    response_description=_QUEUED,
    responses=_TRIGGER_RESPONSES,
)
def restore(
    table_name: TableName, user: UserDep, request: Annotated[RestoreRequest | None, Body()] = None
) -> TriggeredRun:
    request = request or RestoreRequest()
    check_backup_name(table_name.value, request.backup)
    conf = {
        "table_name": table_name.value,
        "backup": request.backup,
        "as_of": request.as_of.isoformat() if request.as_of else None,
        "dry_run": request.dry_run,
    }
    return trigger(RESTORE_DAG, conf, user)


def _add_metric_routes(app: FastAPI) -> None:
    """``GET /api/metrics/<name, dashed>`` for each metric of ``SERVED_METRICS``."""
    for table, (model_name, summary) in SERVED_METRICS.items():
        app.add_api_route(
            f"/api/metrics/{table.replace('_', '-')}",
            _metric_reader(table),
            methods=["GET"],
            response_model=list[metric_model(metrics.METRICS[table], model_name)],
            tags=["metrics"],
            summary=summary,
            response_description="The metric table's rows, in the metric's order.",
            responses=_METRIC_RESPONSES,
            name=table,  # FastAPI builds the operation id from it: quarterly_hires_2021_api_metrics_...
        )


def create_app(max_body: int | None = None) -> FastAPI:
    """The app; ``max_body``: the body size limit in bytes (default: ``max_body_bytes()``)."""
    limit = max_body if max_body is not None else max_body_bytes()
    app = FastAPI(
        title="HR pipeline API",
        version="1.0",
        description=__doc__.split("\n\n")[0] + " Every endpoint needs Airflow's JWT "
        f"(POST /auth/token) as a Bearer token, or the UI's session. Request bodies: at most "
        f"{limit} bytes (413 above).",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodySizeLimit, limit=limit)
    _serve_docs_offline(app)
    app.include_router(pipeline_routes)
    _add_metric_routes(app)
    # Imported here: the pages' routes use this module's authentication, defined above.
    from hr_pipeline.api.pages.routes import add_pages

    add_pages(app)
    return app


app = create_app()
