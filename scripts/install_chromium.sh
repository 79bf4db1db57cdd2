#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser tests, once. Idempotent: does nothing
# when /usr/bin/chromium is already there. Playwright's own browser download is never used (the
# machines reach only the package registries); the tests launch this binary instead.
# Usage: scripts/install_chromium.sh   (needs root or sudo for apt-get)
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "Chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "Chromium is missing and installing it needs root (apt-get install chromium)" >&2; exit 1; }
  sudo_cmd="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "Chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
