#!/usr/bin/env bash
# Installs the Debian packages pipc's build needs, if any are missing.
# Usage: scripts/deps.sh [extra-package...]
set -euo pipefail

# python3-dev builds the preload library's Python test; libcli11-dev and
# nlohmann-json3-dev build the pipc tool; tmux and jq run its tests.
wanted=(g++ cmake ninja-build pkg-config libgtest-dev libgmock-dev python3-dev libcli11-dev nlohmann-json3-dev tmux jq "$@")
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "pipc: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
