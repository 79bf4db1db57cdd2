#!/usr/bin/env bash
# Start or stop this checkout's Azurite (Azure Storage emulator, blob service only) in the
# background, on a port verified to be its own; the work is done by scripts/azurite.py.
# Usage: scripts/azurite.sh start|stop|status|port [DATA_DIR] [PORT]
#   PORT (or AZURITE_BLOB_PORT): the port to use; refused, naming the port, when another process
#   holds it. Unset: 10000 if free, else the last port used, else a free one (printed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
exec "$py" "$root/scripts/azurite.py" "$@"
