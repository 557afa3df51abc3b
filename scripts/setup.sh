#!/usr/bin/env bash
# Installs everything Keel needs to build, test and run its testbed, with apt-get (Debian 12).
# Idempotent: installs only what is missing; runs `apt-get update` only when the package lists
# are missing, over a day old, or lack a wanted package.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

wanted=()
for list in scripts/packages.txt scripts/testbed/packages.txt; do
  [ -f "$list" ] || continue
  while read -r pkg _; do
    case "$pkg" in ''|'#'*) continue ;; esac
    wanted+=("$pkg")
  done <"$list"
done

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done


# Lists are refreshed when a wanted package has no candidate, or when they are over a day old
# (the testbed resolves the newest Debian kernel from them).
stale=0
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -1 -print -quit 2>/dev/null)" ]; then
  stale=1
fi
for pkg in "${missing[@]}"; do
  candidate=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then stale=1; fi
done
if [ "$stale" -eq 1 ]; then
  echo "setup: refreshing package lists (apt-get update)"
  "${sudo_cmd[@]}" apt-get update -qq
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#wanted[@]} packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
