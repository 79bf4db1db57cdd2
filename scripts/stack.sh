#!/usr/bin/env bash
# Start / stop the local Airflow stack (api-server on http://localhost:8080, scheduler,
# dag-processor, triggerer) and the Azurite blob emulator on 10000, in the background.
# Ports: AIRFLOW_API_PORT / AZURITE_BLOB_PORT when set (refused when another process holds them);
# unset, the defaults when free, else free ports (printed and written to .local/airflow.env).
# State, logs (.local/logs/*.log) and pid files (.local/run/*.pid) live in .local/.
# Failure alerts: AIRFLOW_CONN_HR_ALERTS_SMTP / AIRFLOW_CONN_HR_ALERTS_WEBHOOK of the caller reach
# every process (no other AIRFLOW__* / AIRFLOW_CONN_* of the caller does); `up` prints the channels.
# The work is done by hr_pipeline.local.stack (`hr-pipeline up|down|status`).
# Usage: scripts/stack.sh up|down|status
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cli="$root/.venv/bin/hr-pipeline"
[ -x "$cli" ] || { echo "No .venv: run 'make install' first" >&2; exit 1; }
exec "$cli" "${1:-status}" "${@:2}"
