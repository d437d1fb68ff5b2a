#!/usr/bin/env bash
# Set up and run everything on a fresh Debian (bookworm) machine:
# ejabberd + erlang-dev (apt, if root), npm ci, the Erlang shim, the sidecar
# and a private ejabberd node with mod_consult and the demo accounts.
# Stays in the foreground; Ctrl-C / SIGTERM stops both.
#
# Env: CONSULT_CONFIG (config/consult.example.json), SIDECAR_PORT (50051),
#      XMPP_PORT (5222), XMPP_DOMAIN (localhost), EJABBERD_DIR (.run/ejabberd)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CONFIG=${CONSULT_CONFIG:-config/consult.example.json}
SIDECAR_PORT=${SIDECAR_PORT:-50051}
XMPP_PORT=${XMPP_PORT:-5222}
XMPP_DOMAIN=${XMPP_DOMAIN:-localhost}
EJABBERD_DIR=${EJABBERD_DIR:-$ROOT/.run/ejabberd}
RUN=$ROOT/.run
mkdir -p "$RUN"

say() { echo "==> $*"; }

# 1. System packages (only if we can be root).
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v ejabberdctl >/dev/null || ! command -v erlc >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  fi
  if [ "$SUDO" = none ]; then
    echo "ejabberd/erlang-dev missing and not root: install them with 'apt-get install ejabberd erlang-dev'" >&2
    exit 1
  fi
  say "apt-get install ejabberd erlang-dev"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y ejabberd erlang-dev
  # The package starts a system ejabberd on 5222 where possible; we run our own.
  say "stopping the system ejabberd service (we run a private node)"
  $SUDO systemctl stop ejabberd 2>/dev/null || $SUDO service ejabberd stop 2>/dev/null || true
fi

# 2. Node dependencies and the shim.
if [ ! -d node_modules ]; then say "npm ci"; npm ci; fi
say "make -C erlang-shim"
make -C erlang-shim

# 3. Sidecar, in its own process group so we can stop all of it.
SIDECAR_PID=""
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  npx tsx scripts/ejabberd-up.ts down --dir "$EJABBERD_DIR" || true
  if [ -n "$SIDECAR_PID" ] && kill -0 "$SIDECAR_PID" 2>/dev/null; then
    kill -TERM -- "-$SIDECAR_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SIDECAR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SIDECAR_PID" 2>/dev/null || true
  fi
  rm -f "$RUN/sidecar.pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting sidecar: tsx src/main.ts --config $CONFIG --grpc-port $SIDECAR_PORT (log: .run/sidecar.log)"
setsid npx tsx src/main.ts --config "$CONFIG" --grpc-port "$SIDECAR_PORT" >"$RUN/sidecar.log" 2>&1 &
SIDECAR_PID=$!
echo "$SIDECAR_PID" >"$RUN/sidecar.pid"
for i in $(seq 300); do   # up to 30 s
  if (exec 3<>"/dev/tcp/127.0.0.1/$SIDECAR_PORT") 2>/dev/null; then break; fi
  if ! kill -0 "$SIDECAR_PID" 2>/dev/null || [ "$i" -eq 300 ]; then
    echo "sidecar did not come up on 127.0.0.1:$SIDECAR_PORT; .run/sidecar.log:" >&2
    tail -n 30 "$RUN/sidecar.log" >&2
    exit 1
  fi
  sleep 0.1
done

# 4. Private ejabberd node with mod_consult + demo accounts.
say "starting ejabberd in $EJABBERD_DIR (c2s 127.0.0.1:$XMPP_PORT, domain $XMPP_DOMAIN)"
npx tsx scripts/ejabberd-up.ts up --dir "$EJABBERD_DIR" --domain "$XMPP_DOMAIN" --port "$XMPP_PORT" \
  --sidecar-port "$SIDECAR_PORT" --ebin erlang-shim/ebin --config "$CONFIG"

echo "sidecar log: .run/sidecar.log   stop: Ctrl-C (or scripts/stop.sh)"
# 5. Foreground until a signal or the sidecar dies. `wait` returns on signals.
while kill -0 "$SIDECAR_PID" 2>/dev/null; do wait "$SIDECAR_PID" || true; done
echo "sidecar exited; .run/sidecar.log:" >&2
tail -n 20 "$RUN/sidecar.log" >&2
exit 1
