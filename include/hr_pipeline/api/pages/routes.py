"""The pages' routes, mounted in the pipeline's app (``hr_pipeline.api.app``) under ``/hr``:

=====================================================  ============================================
``GET /hr/pages/metrics?year=&department=&job=``       the "HR metrics" page
``GET /hr/pages/metrics/<dataset>.csv?year=...``       one chart's data (``metrics_page.DATASETS``)
``GET /hr/pages/quality?dag_id=&run_id=``              the "Data quality" page of a run
``GET /hr/pages/static/...``                           the pages' stylesheet, script and icons
=====================================================  ============================================

Authentication and authorization are the API's own (``airflow_user``, ``_authorize``): no
credentials, 401; a user who may not read the DAG, 403. The metrics pages need read access to
``publish_metrics`` (as ``GET /hr/api/metrics/...``), the quality page read access to the runs of
its DAG. Static files are public: they hold no data.

The routes are left out of the OpenAPI document, which describes the API.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response

from hr_pipeline.api import app as http_api
from hr_pipeline.api.pages import metrics_page, quality_page
from hr_pipeline.api.pages.document import STATIC, airflow_base, page
from hr_pipeline.api.pages.metrics_page import Publication, Selection

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The metric tables the page reads (all years); the 2021 tables are cuts of these.
QUARTERS_TABLE, ABOVE_MEAN_TABLE = "hires_by_quarter", "departments_above_mean"

pages_routes = APIRouter(include_in_schema=False)


def _airflow(request: Request) -> str:
    return airflow_base(request.scope.get("root_path", ""), http_api.URL_PREFIX)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def last_publication(dag_id: str = http_api.METRICS_DAG) -> Publication | None:
    """The newest asset event of the published ``hires_by_quarter`` (``publish_metrics``'s
    ``record_published_row_counts`` emits one per table after each swap), with the row counts
    of every table of that run. None when there is none, or Airflow's metadata cannot be read."""
    from airflow import settings
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    # The assets' names are hr_pipeline.ops.assets' (warehouse.<table>); ops is not importable here.
    names = {f"warehouse.{table}": table for table in (QUARTERS_TABLE, ABOVE_MEAN_TABLE)}
    try:
        with settings.Session() as session:
            newest = session.execute(
                select(AssetEvent.source_run_id, AssetEvent.timestamp)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.name == f"warehouse.{QUARTERS_TABLE}", AssetEvent.source_dag_id == dag_id)
                .order_by(AssetEvent.timestamp.desc())
                .limit(1)
            ).first()
            if newest is None:
                return None
            events = session.execute(
                select(AssetModel.name, AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == newest.source_run_id)
            ).all()
    except Exception:  # the page still shows the tables; the log says why the run is not named
        log.exception("Airflow's metadata: the last %s run cannot be read", dag_id)
        return None
    rows = {names[name]: (extra or {}).get("rows") for name, extra in events if name in names}
    return Publication(dag_id, newest.source_run_id, newest.timestamp, rows)


def _metrics_view(year: int | None, department: list[str], job: list[str]) -> metrics_page.MetricsView:
    selection = Selection(year, tuple(department), tuple(job))
    return metrics_page.build_view(
        http_api.read_metric_table(QUARTERS_TABLE), http_api.read_metric_table(ABOVE_MEAN_TABLE), selection
    )


YearQuery = Annotated[int | None, Query(description="The year (default: the latest the tables hold).")]
NamesQuery = Annotated[list[str], Query()]


@pages_routes.get("/pages/metrics", response_class=HTMLResponse)
def metrics(
    request: Request,
    user: http_api.UserDep,
    year: YearQuery = None,
    department: NamesQuery = None,
    job: NamesQuery = None,
) -> HTMLResponse:
    if job is None:
        job = []
    if department is None:
        department = []
    http_api._authorize(user, "GET", http_api.METRICS_DAG, run_access=False)
    view = _metrics_view(year, department, job)
    body = metrics_page.render(view, last_publication(), _root(request), _airflow(request))
    return HTMLResponse(page("HR metrics", body, _root(request)))


@pages_routes.get("/pages/metrics/{dataset}.csv")
def metrics_csv(
    dataset: str,
    user: http_api.UserDep,
    year: YearQuery = None,
    department: NamesQuery = None,
    job: NamesQuery = None,
) -> Response:
    if job is None:
        job = []
    if department is None:
        department = []
    http_api._authorize(user, "GET", http_api.METRICS_DAG, run_access=False)
    if dataset not in metrics_page.DATASETS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"No dataset {dataset!r}; there are: {', '.join(metrics_page.DATASETS)}",
        )
    from hr_pipeline.ingest.run import spreadsheet_safe

    view = _metrics_view(year, department, job)
    header, rows = metrics_page.dataset(view, dataset)
    return Response(
        metrics_page.to_csv(header, rows, spreadsheet_safe),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{dataset}-{view.year}.csv"'},
    )


@pages_routes.get("/pages/quality", response_class=HTMLResponse)
def quality(
    request: Request,
    user: http_api.UserDep,
    dag_id: Annotated[str, Query(min_length=1, max_length=250)],
    run_id: Annotated[str, Query(min_length=1, max_length=250)],
) -> HTMLResponse:
    http_api._authorize(user, "GET", dag_id, run_access=True)
    if dag_id != quality_page.INGEST_DAG:
        body = quality_page.not_an_ingest(dag_id, run_id, _airflow(request))
    else:
        body = quality_page.render(run_quality(dag_id, run_id), _airflow(request))
    return HTMLResponse(page(f"Data quality of {run_id}", body, _root(request)))


def _unavailable(what: str, remedy: str) -> HTTPException:
    """503 with a reference to the cause in the log (which names hosts and ports)."""
    reference = uuid.uuid4().hex[:12]
    log.exception("%s pages: %s cannot be read (reference %s)", http_api.URL_PREFIX, what, reference)
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{what} cannot be read; {remedy} The cause is in the api-server's log under reference {reference}.",
    )


def run_quality(dag_id: str, run_id: str) -> quality_page.RunQuality:
    """The run's ledger rows and the reasons in its rejects files."""
    from hr_pipeline.runtime.settings import raw_container
    from hr_pipeline.warehouse.facade import Warehouse

    try:
        files = quality_page.read_ledger(Warehouse(), run_id)
    except Exception:  # noqa: BLE001 - no ledger table yet, or no warehouse: the same 503, its cause logged
        raise _unavailable("The ingest ledger", "has an ingest_table run archived a file yet?") from None
    container, rejects, unreadable = raw_container(), {}, {}
    for item in files:
        if not item["rejects_file"]:
            continue
        try:
            rejects[item["file"]] = read_rejects(container, item["rejects_file"])
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception(
                "%s pages: rejects file %s unreadable (reference %s)",
                http_api.URL_PREFIX,
                item["rejects_file"],
                reference,
            )
            unreadable[item["file"]] = (
                f"Its rejects file cannot be read from Blob Storage just now; the cause is in the "
                f"api-server's log under reference {reference}."
            )
    return quality_page.RunQuality(dag_id, run_id, container, files, rejects, unreadable)


def read_rejects(container: str, blob: str) -> quality_page.RejectsSummary:
    """A rejects file's reasons, read as it streams from Blob Storage (never whole in memory)."""
    from hr_pipeline.storage.blob_store import BlobStore

    blocks = BlobStore().iter_blocks(container, blob)
    try:
        return quality_page.summarize_rejects(quality_page.text_lines(blocks))
    finally:
        close = getattr(blocks, "close", None)
        if close:
            close()  # stops the download when the summary had read enough


def add_pages(app: FastAPI) -> None:
    """The pages' routes and static files, on ``app``."""
    from fastapi.staticfiles import StaticFiles

    app.mount(STATIC, StaticFiles(directory=STATIC_DIR), name="pages-static")
    app.include_router(pages_routes)
