"""HR data pipeline: the logic behind the Airflow DAGs in ``dags/``.

Plain Python, importable without Airflow's scheduler. Heavy libraries (pandas, Great
Expectations, fastavro) are imported inside the functions that need them so that DAG files,
which import from here, parse fast.
"""
