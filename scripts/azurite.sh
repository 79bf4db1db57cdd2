#!/usr/bin/env bash
# Start or stop this checkout's Azurite (Azure Storage emulator, blob service only) in the
# background, on a port verified to be its own; the work is done by hr_pipeline.local.azurite.
# Usage: scripts/azurite.sh start|stop|status|port [DATA_DIR] [PORT]
#   PORT (or AZURITE_BLOB_PORT): the port to use; refused, naming the port, when another process
#   holds it. Unset: 10000 if free, else the last port used, else a free one (printed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "No .venv: run 'make install' first" >&2; exit 1; }
exec "$py" -m hr_pipeline.local.azurite "$@"
