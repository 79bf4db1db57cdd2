"""Mounts the pipeline's HTTP API (``hr_pipeline.api.app``) in Airflow's api-server at /hr.

Endpoints, authentication and OpenAPI docs: see ``include/hr_pipeline/api/app.py``; the docs
are served at ``/hr/docs`` (and ``/hr/openapi.json``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from hr_pipeline.api.app import URL_PREFIX, app


class HrApiPlugin(AirflowPlugin):
    name = "hr_api"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "HR pipeline API"}]
