#!/usr/bin/env bash
# Stops what scripts/run.sh started for one run directory (CONSULT_RUN_DIR, default .run):
# a running run.sh is sent SIGTERM and stops its sidecar and ejabberd itself; if run.sh
# is gone (e.g. killed with SIGKILL), its ejabberd node and sidecar are stopped here.
# Deletes no data.
set -euo pipefail
[ -n "${CONSULT_RUN_DIR:-}" ] && case $CONSULT_RUN_DIR in /*) ;; *) CONSULT_RUN_DIR=$PWD/$CONSULT_RUN_DIR ;; esac
cd "$(dirname "$0")/.."
RUN_DIR=${CONSULT_RUN_DIR:-$PWD/.run}
[ -d "$RUN_DIR" ] || { echo "no run directory $RUN_DIR: nothing to stop"; exit 0; }

# run.sh itself, if it still runs: its cleanup stops ejabberd and the sidecar.
if [ -f "$RUN_DIR/run.pid" ]; then
  pid=$(cat "$RUN_DIR/run.pid")
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'run\.sh'; then
    kill -TERM "$pid"
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "run.sh (pid $pid) still runs after 60 s" >&2; exit 1; fi
    echo "run.sh (pid $pid) stopped"
  fi
fi

# Whatever a killed run.sh left behind.
EJABBERD_DIR=${EJABBERD_DIR:-$(cat "$RUN_DIR/ejabberd.dir" 2>/dev/null || echo "$RUN_DIR/ejabberd")}
node --import tsx scripts/ejabberd-up.ts down --dir "$EJABBERD_DIR"
if [ -f "$RUN_DIR/sidecar.pid" ]; then
  pid=$(cat "$RUN_DIR/sidecar.pid")
  # run.sh starts the sidecar with setsid: its pid is its process group.
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'dist/main\.js'; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "sidecar (group $pid) stopped"
  fi
  rm -f "$RUN_DIR/sidecar.pid"
fi
rm -f "$RUN_DIR/run.pid"
