#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian (bookworm) machine, then runs them all (`npm test`).
# As root: apt-get installs ejabberd, erlang-dev, erlang-proper (the shim's properties), postgresql
# (tests start private clusters), openssl (throwaway CAs for the TLS tests), chromium and a CJK font
# (the widget and console in a real browser), nginx-light (`nginx -t` on docs/production.md), strace (the embedded store's syncs, seen from outside);
# then `npm ci` and `npm test` (the shim's EUnit/PropEr suites, lint and layer check, build, type check,
# unit and end-to-end tests). Packages already
# installed are left as they are; the system ejabberd service the package may start is stopped.
#
#   scripts/test.sh            everything
#   scripts/test.sh PATTERN    only the uvu test files whose path matches PATTERN (after the same set-up)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"
PACKAGES=(ejabberd erlang-dev erlang-p1-pgsql erlang-proper postgresql openssl chromium fonts-wqy-zenhei strace nginx-light)

step() { echo; echo "==> [$(date +%H:%M:%S)] $*"; }

if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
  echo "Node.js >= 20 is required (found $(node --version 2>/dev/null || echo none)); see README, Requirements" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run this as root, or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  step "apt-get install ${missing[*]}"
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# The package may have started a system ejabberd (ports 5222/5269/5280...). The tests run private nodes
# with their own names and ports, but nothing should compete for ports or CPU. Only the service, by name.
if [ "$(id -u)" -eq 0 ]; then systemctl stop ejabberd 2>/dev/null || service ejabberd stop 2>/dev/null || true; fi
if [ "$(id -u)" -eq 0 ]; then systemctl stop nginx 2>/dev/null || service nginx stop 2>/dev/null || true; fi # only its nginx -t is used

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  step "npm ci"
  npm ci
fi

step "npm test"
if [ $# -gt 0 ]; then
  npm run build:shim && npm run build && npx uvu -r tsx test "$1"
else
  npm test
fi
