"""The frame every page shares: its head (the stylesheet and script served by this app, never
a CDN), a title, and the links into Airflow's own UI.

Pages are shown by Airflow's UI inside an iframe that may not navigate the whole window (the
UI's sandbox has no ``allow-top-navigation``). A link into the UI (a DAG run, say) is marked
``data-airflow-link``; ``pages.js`` opens it in the UI's own window instead of inside the frame.
"""

from __future__ import annotations

from urllib.parse import quote

from hr_pipeline.api.pages.markup import Html, html

STATIC = "/pages/static"


def airflow_base(root_path: str, url_prefix: str) -> str:
    """Airflow's base path (its UI) from the mount point of this app (``<base>/hr``)."""
    return root_path[: -len(url_prefix)] if root_path.endswith(url_prefix) else ""


def run_url(base: str, dag_id: str, run_id: str) -> str:
    """The run's page in Airflow's UI."""
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def airflow_link(url: str, text: object) -> Html:
    return html('<a href="{}" target="_top" data-airflow-link>{}</a>', url, text)


def page(title: str, body: Html, root: str) -> Html:
    """A whole HTML document; ``root``: where this app is mounted (``/hr``)."""
    return html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{}</title>"
        '<link rel="stylesheet" href="{}{}/pages.css">'
        '<script src="{}{}/pages.js" defer></script>'
        "</head><body><main>{}</main></body></html>",
        title,
        root,
        STATIC,
        root,
        STATIC,
        body,
    )
