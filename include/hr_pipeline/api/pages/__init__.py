"""Pages in Airflow's UI, served by the pipeline's app (``hr_pipeline.api.app``) and shown by
the UI through the plugin's ``external_views`` (``plugins/hr_api_plugin.py``):

- "HR metrics" (``metrics_page``), in the UI's navigation: the published metric tables drawn.
- "Data quality" (``quality_page``), a tab of every DAG run: an ``ingest_table`` run's files,
  rows and rejected rows, from the ingest ledger and the rejects files.

Charts are SVG drawn on the server (``charts``), markup is built with every value escaped
(``markup``), and the stylesheet and script are files of this package (``static/``): nothing is
fetched from outside the api-server. Routes and authorization: ``routes``. See docs/pages.md.
"""
