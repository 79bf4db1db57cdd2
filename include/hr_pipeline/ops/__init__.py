"""What runs the stages in Airflow: assets, sensors, run states, alerts, lineage.

May import: the stages, storage, warehouse, contract, runtime.
"""
