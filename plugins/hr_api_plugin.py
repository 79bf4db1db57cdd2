"""Mounts the pipeline's HTTP API (``hr_pipeline.api.app``) in Airflow's api-server at /hr, and
shows its pages in Airflow's UI.

Endpoints, authentication and OpenAPI docs: see ``include/hr_pipeline/api/app.py``; the docs
are served at ``/hr/docs`` (and ``/hr/openapi.json``). The pages: ``hr_pipeline.api.pages``.

``external_views`` (Airflow 3.1+) puts each page in the UI, in an iframe: "HR metrics" in the
navigation, "Data quality" as a tab of every DAG run (the UI fills ``{DAG_ID}`` and ``{RUN_ID}``
in the href of a non-navigation view). Hrefs and icons are relative to Airflow's base URL (no
leading slash), so they follow a base URL with a path.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from hr_pipeline.api.app import URL_PREFIX, app

_PAGES = URL_PREFIX.strip("/") + "/pages"


class HrApiPlugin(AirflowPlugin):
    name = "hr_api"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "HR pipeline API"}]
    external_views = [
        {
            "name": "HR metrics",
            "href": f"{_PAGES}/metrics",
            "destination": "nav",
            "url_route": "hr-metrics",
            "icon": f"{_PAGES}/static/hr-metrics.svg",
        },
        {
            "name": "Data quality",
            "href": f"{_PAGES}/quality?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "data-quality",
            "icon": f"{_PAGES}/static/data-quality.svg",
        },
    ]
