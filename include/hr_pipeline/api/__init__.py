"""The /hr HTTP API mounted in Airflow's API server.

May import: the stages, storage, warehouse, contract, runtime.
"""
