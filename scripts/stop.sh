#!/usr/bin/env bash
# Stops what scripts/run.sh started, e.g. after it was killed with SIGKILL.
set -euo pipefail
cd "$(dirname "$0")/.."
EJABBERD_DIR=${EJABBERD_DIR:-$PWD/.run/ejabberd}
npx tsx scripts/ejabberd-up.ts down --dir "$EJABBERD_DIR"
if [ -f .run/sidecar.pid ]; then
  pid=$(cat .run/sidecar.pid)
  # run.sh starts the sidecar with setsid: its pid is its process group.
  kill -TERM -- "-$pid" 2>/dev/null && echo "sidecar (group $pid) stopped" || true
  rm -f .run/sidecar.pid
fi
